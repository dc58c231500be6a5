'use strict';
// Log lines for the supervisor (part of the proxy, see proxy.js): what arrives on the worker's
// stdout and stderr pipes becomes OpenWhisk log lines, counted against the 10 MiB limit, and
// each activation's lines are written to FT_PROXY_DIR/logs/<activation id>.log.
// The format and rules are those of the Python proxy's _ft_logs.py.

const fs = require('fs');
const path = require('path');

const SENTINEL = Buffer.from('XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX');
const LOG_LIMIT = 10 * 1024 * 1024;
const TRUNCATED =
  `Logs were truncated because the total bytes size exceeds the limit of ${LOG_LIMIT} bytes.`;
// The limit counts what the action wrote, as OpenWhisk does; stamps and stream names add about
// 40 bytes a line on top, so the file itself is cut at twice the limit (as the Python proxy
// does): 10 MiB of one-character lines would otherwise make a file of 200 MB.
const LOG_FILE_LIMIT = 2 * LOG_LIMIT;
const MAX_PARTIAL = 64 * 1024; // a longer line without newline is emitted in pieces
const CHUNK = 64 * 1024;
const NEWLINE = 0x0a;

/** Wall-clock time in nanoseconds as a BigInt. Date.now() only has milliseconds, so the clock
 * is anchored once and advanced with the monotonic hrtime; it is re-anchored when the wall
 * clock was stepped (NTP, suspend) by more than a few milliseconds. */
class Clock {
  constructor() {
    this.anchor();
  }

  anchor() {
    this.wall0 = BigInt(Date.now()) * 1000000n;
    this.mono0 = process.hrtime.bigint();
  }

  nowNs() {
    const ns = this.wall0 + (process.hrtime.bigint() - this.mono0);
    const drift = Number(ns / 1000000n) - Date.now();
    if (drift > 5 || drift < -5) {
      this.anchor();
      return this.wall0;
    }
    return ns;
  }
}

/** Formatted lines as bytes, in chunks: a JS string per line would cost ~64 bytes of overhead
 * each, and joining them for the file another copy, in a container that may have 128 MB. */
class ByteSink {
  constructor() {
    this.chunks = [];
    this.current = null;
    this.used = 0;
    this.size = 0;
  }

  write(text) {
    const length = Buffer.byteLength(text);
    if (!this.current || this.used + length > this.current.length) {
      if (this.current) this.chunks.push(this.current.subarray(0, this.used));
      this.current = Buffer.allocUnsafe(Math.max(CHUNK, length));
      this.used = 0;
    }
    this.used += this.current.write(text, this.used);
    this.size += length;
  }

  /** The bytes written so far, as a list of buffers. */
  buffers() {
    if (this.current && this.used) this.chunks.push(this.current.subarray(0, this.used));
    return this.chunks;
  }
}

// Room kept at the end of a file for the truncation line.
const TRUNCATION_ROOM = Buffer.byteLength(`${'x'.repeat(30)} stderr: ${TRUNCATED}\n`);

class LogBuffer {
  constructor() {
    this.sink = new ByteSink();
    this.size = 0; // bytes the action wrote, counted against LOG_LIMIT
    this.truncated = false;
    this.seen = [0, 0]; // sentinels read, per stream
    this.pending = [null, null]; // bytes of an unfinished line, per stream
    this.clock = new Clock();
    this.stampCache = [-1n, ''];
  }

  stamp(ns) {
    const seconds = ns / 1000000000n;
    if (seconds !== this.stampCache[0]) {
      // "2024-06-10T12:00:00" from "2024-06-10T12:00:00.000Z"
      this.stampCache = [seconds, new Date(Number(seconds) * 1000).toISOString().slice(0, 19)];
    }
    const fraction = String(ns % 1000000000n).padStart(9, '0');
    return `${this.stampCache[1]}.${fraction}Z`;
  }

  /** A chunk read from stream ``index`` (0 stdout, 1 stderr); one timestamp for all of it,
   * taken as it is read, like OpenWhisk's log store does per line docker delivers. */
  add(index, chunk) {
    const stream = index === 0 ? 'stdout' : 'stderr';
    let data = this.pending[index] ? Buffer.concat([this.pending[index], chunk]) : chunk;
    let stamp = null;
    let start = 0;
    let end;
    while ((end = data.indexOf(NEWLINE, start)) !== -1) {
      stamp = stamp || this.stamp(this.clock.nowNs());
      this.addLine(index, stream, data.subarray(start, end), stamp);
      start = end + 1;
    }
    data = data.subarray(start);
    if (data.length > MAX_PARTIAL) {
      this.addLine(index, stream, data, stamp || this.stamp(this.clock.nowNs()));
      data = null;
    }
    // A copy: the chunk's memory belongs to the stream and a short rest would pin it.
    this.pending[index] = data && data.length ? Buffer.from(data) : null;
  }

  /** The stream ended: its unfinished line, if any, is a line. */
  end(index) {
    if (this.pending[index]) {
      const stream = index === 0 ? 'stdout' : 'stderr';
      this.addLine(index, stream, this.pending[index], this.stamp(this.clock.nowNs()));
      this.pending[index] = null;
    }
  }

  addLine(index, stream, line, stamp) {
    const at = line.length - SENTINEL.length;
    if (at >= 0 && line.indexOf(SENTINEL, at) === at) {
      // Whatever preceded the sentinel on its line is a last partial line.
      this.seen[index] += 1;
      line = line.subarray(0, at);
      if (!line.length) return;
    }
    if (this.truncated) return;
    this.size += line.length + 1;
    if (this.size > LOG_LIMIT) {
      this.truncated = true;
      return;
    }
    let text = line.toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    const formatted = `${stamp.padEnd(30)} ${stream}: ${text}\n`;
    // Nothing past the file limit is kept, in memory either.
    if (this.sink.size + Buffer.byteLength(formatted) > LOG_FILE_LIMIT - TRUNCATION_ROOM) {
      this.truncated = true;
      return;
    }
    this.sink.write(formatted);
  }

  /** Everything logged so far as buffers of "\n"-terminated lines (empty if nothing was), and
   * a fresh start for the next activation. */
  take() {
    const sink = this.sink;
    this.sink = new ByteSink();
    this.size = 0;
    if (this.truncated) {
      this.truncated = false;
      sink.write(`${this.stamp(this.clock.nowNs()).padEnd(30)} stderr: ${TRUNCATED}\n`);
    }
    return sink.buffers();
  }
}

// Activation ids are 32 hex chars; tests and tools use other simple names. Nothing that could
// name a path outside the log directory.
const SAFE_ID = /^[A-Za-z0-9_-]+$/;

/** Write an activation's log (buffers from LogBuffer.take) atomically (temp name, then
 * rename): the invoker must never read half a file. No lines, no file: the invoker reads a
 * missing file as "no logs". Returns an error message, or null. */
function writeLogFile(logDir, activationId, buffers) {
  if (!buffers.length) return null;
  if (typeof activationId !== 'string' || !SAFE_ID.test(activationId)) {
    const size = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    return `no usable activation id ${JSON.stringify(activationId)}: ${size} bytes of logs dropped`;
  }
  const file = path.join(logDir, `${activationId}.log`);
  const temp = path.join(logDir, `.${activationId}.tmp`);
  try {
    const fd = fs.openSync(temp, 'w', 0o644);
    try {
      for (const buffer of buffers) {
        for (let done = 0; done < buffer.length; ) done += fs.writeSync(fd, buffer, done);
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    return `cannot write ${file}: ${err.message}`;
  }
  return null;
}

module.exports = { LogBuffer, writeLogFile, SENTINEL, LOG_LIMIT, LOG_FILE_LIMIT, TRUNCATED };
