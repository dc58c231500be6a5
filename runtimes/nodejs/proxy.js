'use strict';
// Funtainer's Node.js action proxy: OpenWhisk's action protocol (POST /init, POST /run) over
// HTTP/1.1 on a Unix socket in FT_PROXY_DIR, with the same contract as the Python proxy
// (runtimes/python/proxy.py). Node's built-ins only.
//
// Two processes, because a Node process cannot point its own fds 1 and 2 at pipes (no dup2),
// and an action's child processes write straight to fds 1 and 2:
//
//   supervisor (this file)                      worker (_ft_worker.js)
//     owns the log pipes' read ends      <---     fds 1, 2 = pipes (children inherit them)
//     timestamps lines as it reads them           HTTP server on the socket + the action
//     writes logs/<activation id>.log    <-IPC->  "start <id>", "done <id>", "ack"
//
// At the end of an activation the worker writes a sentinel line to stdout and stderr, then
// sends "done <id>" over the IPC channel. The supervisor waits until it has read both
// sentinels (so everything written before them is in its buffer), writes the activation's
// log file atomically, and sends "ack"; only then does the worker send the HTTP response.
// If the worker dies mid-activation, the supervisor still writes what that activation logged,
// then exits: the container is broken and the invoker destroys it.
//
// Files: proxy.js (supervisor), _ft_logs.js (its log lines and files), _ft_worker.js (HTTP,
// /init, /run), _ft_action.js (loading the action's code), _ft_unzip.js (zip actions).

const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const SENTINEL_WAIT_MS = 2000;
// After the worker died: how long to wait for the last output its children may still write.
const EXIT_DRAIN_MS = 300;

function diag(message) {
  // The proxy's own diagnostics go to the container's stderr (`docker logs`), never into an
  // activation's logs.
  try {
    fs.writeSync(2, `ft-proxy: ${message}\n`);
  } catch {
    // nowhere left to report to
  }
}

/** Two real pipes (FIFOs) for the worker's stdout and stderr: [[read, write], [read, write]].
 * Node's own 'pipe' stdio would be socketpairs, on which a child's `echo x > /dev/stderr`
 * fails (ENXIO); with FIFOs actions see the same kind of fds as under OpenWhisk. */
function makePipes() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ft-proxy-'));
  try {
    const names = [path.join(dir, 'stdout'), path.join(dir, 'stderr')];
    const made = childProcess.spawnSync('mkfifo', ['-m', '600', ...names], { stdio: 'ignore' });
    if (made.status !== 0) {
      throw new Error(`mkfifo failed: ${made.error ? made.error.message : made.status}`);
    }
    // The read end first and non-blocking (a blocking open would wait for a writer); then
    // the write end opens at once. Both are close-on-exec here; spawn() hands the write ends
    // to the worker as its fds 1 and 2. The names are not needed once the fds are open.
    const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;
    return names.map((name) => [
      fs.openSync(name, O_RDONLY | O_NONBLOCK),
      fs.openSync(name, O_WRONLY),
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The sandbox backend hands each sandbox the read end of a pipe only its invoker writes to: it
// ends once the invoker is gone, however it went. Then the proxy ends everything else in the
// sandbox and itself, so no sandbox outlives its invoker (not even one whose start the
// invoker's death cut short). Only as pid 2, the command bubblewrap's init starts in a pid
// namespace of its own, where kill(-1) reaches nothing outside.
function watchLifeline() {
  const fd = process.env.FT_LIFELINE_FD;
  delete process.env.FT_LIFELINE_FD;
  if (fd === undefined || process.pid !== 2) return;
  const net = require('net');
  const lifeline = new net.Socket({ fd: Number(fd), readable: true, writable: false });
  lifeline.on('data', () => {});
  lifeline.on('error', () => {});
  lifeline.on('close', () => {
    try {
      process.kill(-1, 'SIGKILL');
    } catch {
      // ESRCH: nothing else was running
    }
    process.exit(0);
  });
  lifeline.unref();
}

function main() {
  watchLifeline();
  const proxyDir = process.env.FT_PROXY_DIR || '/ft';
  const logDir = path.join(proxyDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });

  let pipes = null;
  try {
    pipes = makePipes();
  } catch (err) {
    diag(`${err.message}; the worker logs into socketpairs instead`);
  }
  // Started first: the worker's start-up is most of the container's, and runs meanwhile.
  const worker = childProcess.spawn(
    process.execPath,
    [path.join(__dirname, '_ft_worker.js')],
    {
      stdio: ['ignore', pipes ? pipes[0][1] : 'pipe', pipes ? pipes[1][1] : 'pipe', 'ipc'],
      // Its own session: an action killing its process group cannot take us along.
      detached: true,
    },
  );
  const net = require('net');
  const { LogBuffer, writeLogFile } = require('./_ft_logs');
  let readers;
  if (pipes) {
    // Our copies of the write ends must go, or the pipes would never report their end.
    for (const [, write] of pipes) fs.closeSync(write);
    readers = pipes.map(([read]) => new net.Socket({ fd: read, readable: true, writable: false }));
  } else {
    readers = [worker.stdout, worker.stderr];
  }

  const logs = new LogBuffer();
  const expected = [0, 0]; // sentinels the worker wrote, per stream
  const ended = [false, false];
  let current = null; // the activation the worker is working on
  let finishing = null; // {id, timer}: "done" received, waiting for the sentinels
  let onBothEnded = null;

  const caughtUp = () => logs.seen[0] >= expected[0] && logs.seen[1] >= expected[1];

  function finish() {
    const { id, timer } = finishing;
    clearTimeout(timer);
    finishing = null;
    current = null;
    const problem = writeLogFile(logDir, id, logs.take());
    if (problem) diag(problem);
    worker.send({ t: 'ack' }, () => {}); // an error means the worker is gone: 'exit' handles it
  }

  readers.forEach((reader, index) => {
    reader.on('data', (chunk) => {
      logs.add(index, chunk);
      if (finishing && caughtUp()) finish();
    });
    reader.on('end', () => {
      logs.end(index);
      ended[index] = true;
      if (onBothEnded && ended[0] && ended[1]) onBothEnded();
    });
    reader.on('error', (err) => diag(`reading the worker's output: ${err.message}`));
  });

  worker.on('message', (message) => {
    switch (message && message.t) {
      case 'start':
        current = message.id;
        break;
      case 'done':
        if (message.o) expected[0] += 1;
        if (message.e) expected[1] += 1;
        finishing = { id: message.id, timer: null };
        if (caughtUp()) {
          finish();
        } else {
          finishing.timer = setTimeout(() => {
            diag('log sentinel not seen in time; logs of this activation may be incomplete');
            // Don't wait for these again on every later activation.
            expected[0] = logs.seen[0];
            expected[1] = logs.seen[1];
            finish();
          }, SENTINEL_WAIT_MS);
        }
        break;
      case 'diag':
        diag(message.m);
        break;
      default:
        break; // not ours (the action cannot reach process.send, but be lenient)
    }
  });

  worker.on('error', (err) => {
    diag(`cannot run the worker: ${err.message}`);
    process.exit(1);
  });

  worker.on('exit', (code, signal) => {
    diag(`worker exited (${signal || `code ${code}`})`);
    // What the worker and its children wrote last may still be in the pipes: read until
    // every writer is gone, or give up after a moment (a background child may live on).
    const id = finishing ? finishing.id : current;
    const done = () => {
      const problem = id ? writeLogFile(logDir, id, logs.take()) : null;
      if (problem) diag(problem);
      process.exit(signal ? 128 + (os.constants.signals[signal] || 0) : (code ?? 1));
    };
    if (ended[0] && ended[1]) {
      done();
    } else {
      onBothEnded = done;
      setTimeout(() => {
        logs.end(0);
        logs.end(1);
        done();
      }, EXIT_DRAIN_MS);
    }
  });

  // As PID 1 in a container a signal without a handler is ignored: `docker stop` would wait.
  // The worker has its own session, so it is stopped explicitly.
  const stop = () => {
    try {
      process.kill(-worker.pid, 'SIGKILL'); // the worker and what the action left running
    } catch {
      worker.kill('SIGKILL');
    }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
