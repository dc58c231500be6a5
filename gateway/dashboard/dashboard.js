// Funtainer's dashboard: one stream of snapshots (server-sent events over fetch, so the key
// travels in the Authorization header, never in a URL), drawn into tiles, canvas charts and
// tables. No libraries: it is served from the package and works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const STREAM = "/api/v1/namespaces/_/dashboard/events";
const RETRY_MS = 2000;
let stream = null;

function keyFromPage() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (key) {
    sessionStorage.setItem("ft-key", key);
    // Out of the address bar (and the history): the key stays in this tab's storage only.
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("ft-key");
}

function showLogin(message) {
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function setConnection(text, state) {
  const pill = $("connection");
  pill.textContent = text;
  pill.className = "pill " + (state || "");
}

async function follow(key) {
  const controller = new AbortController();
  stream = controller;
  $("login").hidden = true;
  $("logout").hidden = false;
  while (stream === controller) {
    try {
      const response = await fetch(STREAM, {
        headers: {
          Authorization: "Basic " + btoa(key), Accept: "text/event-stream",
          // Asks for a 401 without the Basic challenge: no browser password dialog.
          "X-Requested-With": "XMLHttpRequest",
        },
        signal: controller.signal, cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) {
        sessionStorage.removeItem("ft-key");
        const body = await response.json().catch(() => ({}));
        showLogin(body.error || "That key was not accepted.");
        setConnection("not connected", "down");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      setConnection("live", "live");
      await readEvents(response.body.getReader());
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    setConnection("reconnecting", "down");
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data) render(JSON.parse(data));
    }
  }
}

// -- drawing -----------------------------------------------------------------------------

function fmt(n, digits = 0) {
  return n === null || n === undefined ? "–" : Number(n).toFixed(digits);
}

function render(snap) {
  $("board").hidden = false;
  $("namespace").textContent = snap.admin ? `${snap.namespace} (administrator: all namespaces)`
                                          : `namespace ${snap.namespace}`;
  const s = snap.series;
  const last = s.t.length - 1;
  $("total-activations").textContent = s.totals.activations;
  $("total-errors").textContent = s.totals.errors;
  $("total-cold").textContent = s.totals.cold_starts;
  $("rate").textContent = fmt(s.activations_per_s[last], 1);
  $("latency").textContent = `${fmt(s.p50_ms[last], 1)} / ${fmt(s.p99_ms[last], 1)} ms`;
  chart($("chart-rate"), s.t, [[s.activations_per_s, "--a"], [s.errors_per_s, "--e"]]);
  chart($("chart-latency"), s.t, [[s.p50_ms, "--a"], [s.p99_ms, "--e"]]);
  chart($("chart-cold"), s.t, [[s.cold_starts, "--c"]]);
  rows($("invokers"), snap.invokers, (i) => [
    i.id, i.state,
    Object.entries(i.containers || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`)
      .join(", ") || "none",
    i.busy ?? "–", i.queued ?? "–",
    i.user_memory === undefined ? "–" : `${i.free_memory} / ${i.user_memory}`,
  ]);
  rows($("latest"), snap.latest, (a) => [
    new Date(a.start).toLocaleTimeString(), snap.admin ? `${a.namespace}/${a.name}` : a.name,
    a.activationId, a.status, `${a.duration} ms`, a.cold ? "cold" : "warm",
  ], (tr, a) => {
    if (a.status !== "success") tr.className = "error";
    tr.children[3].className = "status";
    tr.onclick = () => {
      const logs = $("logs");
      logs.hidden = false;
      logs.textContent = `${a.activationId}\n` + (a.logs.length ? a.logs.join("\n") : "(no logs)");
    };
  });
  rows($("feeds"), snap.feeds, (f) => [
    snap.admin ? `${f.namespace}/${f.trigger}` : f.trigger, f.kind, f.queue || "–",
    f.waiting ?? "–", f.dead_letters ?? "–",
  ]);
}

function rows(table, items, cells, decorate) {
  const body = table.tBodies[0];
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    if (decorate) decorate(tr, item);
    return tr;
  }));
}

function chart(canvas, times, lines) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 44, right: 8, top: 8, bottom: 18 };
  const style = getComputedStyle(document.documentElement);
  ctx.clearRect(0, 0, width, height);
  const values = lines.flatMap(([v]) => v.filter((x) => x !== null));
  const top = Math.max(1, ...values) * 1.1;
  const x = (i) => pad.left + (i / Math.max(1, times.length - 1)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#e3e6ec";
  ctx.fillStyle = "#6b7385";
  ctx.font = "11px system-ui, sans-serif";
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    ctx.beginPath(); ctx.moveTo(pad.left, y(v)); ctx.lineTo(width - pad.right, y(v)); ctx.stroke();
    ctx.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(1), 4, y(v) + 4);
  }
  ctx.fillText("-5 min", pad.left, height - 4);
  ctx.fillText("now", width - pad.right - 22, height - 4);
  for (const [series, color] of lines) {
    ctx.strokeStyle = style.getPropertyValue(color).trim();
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    series.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      if (drawing) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      drawing = true;
    });
    ctx.stroke();
    // A point with no neighbour draws no line: every point gets a dot.
    ctx.fillStyle = ctx.strokeStyle;
    series.forEach((v, i) => {
      if (v === null) return;
      ctx.beginPath(); ctx.arc(x(i), y(v), 2, 0, 2 * Math.PI); ctx.fill();
    });
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key.includes(":")) { showLogin("A key looks like uuid:key."); return; }
  sessionStorage.setItem("ft-key", key);
  $("key").value = "";
  follow(key);
});

$("logout").addEventListener("click", () => {
  if (stream) stream.abort();
  stream = null;
  sessionStorage.removeItem("ft-key");
  setConnection("not connected");
  showLogin();
});

const initialKey = keyFromPage();
if (initialKey) follow(initialKey); else showLogin();
