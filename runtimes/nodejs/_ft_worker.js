'use strict';
// The proxy's worker (see proxy.js for the design): the HTTP server on the Unix socket and
// the action itself (loaded by _ft_action.js). Its fds 1 and 2 are pipes read by the
// supervisor, which turns them into the activations' log files; this process only marks where
// an activation ends.

const fs = require('fs');
const http = require('http');
const path = require('path');
const { InitError, loadAction, describe, errorValue } = require('./_ft_action');

const NOT_A_RESULT = 'The action did not return a dictionary or array.';
const SENTINEL_LINE = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';

// The IPC channel belongs to the proxy. Libraries take a `process.send` as a sign that they
// were forked by a parent that wants messages, so the action does not get to see it.
const send = process.send.bind(process);
delete process.send;
delete process.disconnect;
// Without the supervisor nobody collects logs or forwards signals: stop.
process.on('disconnect', () => process.exit(1));

function diag(message) {
  send({ t: 'diag', m: message });
}

// Our handles on fds 1 and 2, taken before the action can replace or patch them, and the
// pipes' inode numbers, to notice an action that closed fd 1 or 2 (we cannot repair it).
const stdio = [process.stdout, process.stderr];
const stdioWrite = stdio.map((stream) => stream.write);
const stdioInode = [1, 2].map((fd) => fs.fstatSync(fd).ino);

/** Our own lines for the activation's log (tracebacks, init failures), on stderr. */
function printErr(text) {
  const line = text.endsWith('\n') ? text : `${text}\n`;
  const stream = stdio[1];
  if (stream.destroyed || stream.writableEnded) {
    // The action ended process.stderr: writing to the stream would raise an 'error' event
    // nobody handles, and that would take the worker down. The fd itself still works.
    try {
      fs.writeSync(2, line);
    } catch {
      // fd 2 is gone too: nowhere to log
    }
    return;
  }
  stdioWrite[1].call(stream, line);
}

// -- end of an activation ------------------------------------------------------------------

let ackWaiter = null;
process.on('message', (message) => {
  if (message && message.t === 'ack' && ackWaiter) {
    const resolve = ackWaiter;
    ackWaiter = null;
    resolve();
  }
});

/** Write the sentinel to stream ``index`` behind everything written to it so far; calls
 * ``done(written)``. */
function markEnd(index, done) {
  const fd = index + 1;
  const stream = stdio[index];
  try {
    if (fs.fstatSync(fd).ino !== stdioInode[index]) return done(false);
  } catch {
    return done(false); // closed by the action
  }
  // Nothing queued in the stream: a direct write keeps the order and costs no callback.
  if (stream.writableLength === 0 || stream.destroyed || stream.writableEnded) {
    try {
      fs.writeSync(fd, SENTINEL_LINE);
      return done(true);
    } catch (err) {
      // The pipe is full (the stream made it non-blocking): queue behind the stream's data.
      if (err.code !== 'EAGAIN' || stream.destroyed || stream.writableEnded) return done(false);
    }
  }
  return stdioWrite[index].call(stream, SENTINEL_LINE, (err) => done(!err));
}

/** Mark the end of the activation on both streams and wait until the supervisor has written
 * its log file. */
function endActivation(id) {
  return new Promise((resolve) => {
    const written = [false, false];
    let left = 2;
    const after = (index) => (ok) => {
      written[index] = ok;
      left -= 1;
      if (left === 0) {
        ackWaiter = resolve;
        send({ t: 'done', id, o: written[0], e: written[1] });
      }
    };
    markEnd(0, after(0));
    markEnd(1, after(1));
  });
}

// -- helpers -------------------------------------------------------------------------------

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

function envValue(value) {
  if (typeof value === 'string') return value;
  return value === null || value === undefined ? '' : JSON.stringify(value);
}

function error(status, message) {
  return [status, JSON.stringify({ error: message })];
}

// -- the routes ----------------------------------------------------------------------------

let action = null; // the entry point, once initialized

async function init(message) {
  if (action) return error(403, 'Cannot initialize the action more than once.');
  const value = message.value;
  if (!isObject(value)) return error(400, "The init request has no 'value' object.");
  const env = value.env === undefined || value.env === null ? {} : value.env;
  const activationId = isObject(env) ? env.__OW_ACTIVATION_ID : undefined;
  send({ t: 'start', id: activationId });
  try {
    if (!isObject(env)) throw new InitError("The init request's 'env' is not an object.");
    for (const [key, item] of Object.entries(env)) process.env[key] = envValue(item);
    action = await loadAction(value);
  } catch (err) {
    const known = err instanceof InitError;
    if (known) {
      if (err.detail) printErr(err.detail); // the stack, as the Python proxy's traceback
      printErr(`Action initialization failed: ${err.message}`);
    } else {
      printErr(describe(err)); // e.g. a NUL byte in an env value
    }
    await endActivation(activationId);
    return error(502, known ? err.message : `The action failed during initialization: ${err}`);
  }
  // Lines logged while initializing stay with the supervisor and go out with the first /run.
  return [200, '{"ok":true}'];
}

async function run(message) {
  if (!action) return error(403, 'Cannot run an uninitialized action.');
  const activationId = message.activation_id;
  send({ t: 'start', id: activationId });
  for (const key of Object.keys(message)) {
    if (key !== 'value') process.env[`__OW_${key.toUpperCase()}`] = envValue(message[key]);
  }
  let result;
  try {
    result = action('value' in message ? message.value : {});
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      result = await result;
    }
    // OpenWhisk's Node.js runtime: a bare `return;` (or a Promise of nothing) is {}.
    if (result === undefined) result = {};
  } catch (err) {
    // A thrown error or a rejected Promise is the action's own (application) error.
    printErr(describe(err));
    result = { error: errorValue(err) };
  }
  let status = 200;
  let body;
  if (result === null || typeof result !== 'object') {
    [status, body] = error(502, NOT_A_RESULT);
  } else {
    try {
      body = JSON.stringify(result);
      if (body === undefined || (body[0] !== '{' && body[0] !== '[')) {
        [status, body] = error(502, NOT_A_RESULT); // a toJSON() that made it something else
      }
    } catch (err) {
      const problem = `The action's result is not JSON serializable: ${err.message}`;
      printErr(problem);
      // Node explains a cycle over several lines; the log has them, the answer the first.
      [status, body] = error(502, problem.split('\n')[0]);
    }
  }
  await endActivation(activationId);
  return [status, body];
}

const ROUTES = { '/init': init, '/run': run };

// -- HTTP ----------------------------------------------------------------------------------

// One request at a time, across all connections, as in the Python proxy: an activation's
// logs and __OW_* environment are the whole process's.
const queue = [];
let busy = false;

function next() {
  const task = queue.shift();
  busy = Boolean(task);
  if (task) task().then(next, next);
}

function reply(res, status, body) {
  const data = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': data.length });
  res.end(data);
}

async function handle(req, res, body) {
  try {
    await answer(req, res, body);
  } catch (err) {
    diag(`internal error: ${describe(err)}`);
    res.destroy(); // the invoker sees a broken container, as it should
  }
}

async function answer(req, res, body) {
  const route = ROUTES[req.url];
  if (req.method !== 'POST') {
    return reply(res, ...error(route ? 405 : 404, `${req.method} ${req.url} is not supported`));
  }
  if (!route) return reply(res, ...error(404, `Unknown path ${req.url}`));
  let message;
  try {
    message = JSON.parse(body); // an empty body too is not JSON, as in the Python proxy
  } catch (err) {
    return reply(res, ...error(400, `The request body is not valid JSON: ${err.message}`));
  }
  if (!isObject(message)) {
    return reply(res, ...error(400, 'The request body is not a JSON object.'));
  }
  return reply(res, ...(await route(message)));
}

const server = http.createServer((req, res) => {
  res.sendDate = false; // nobody reads it, and it costs a clock read and a format per answer
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    queue.push(() => handle(req, res, body));
    if (!busy) next();
  });
});
// The invoker keeps one connection per container for as long as the container lives, idle
// for minutes (paused, even); Node would close it after 5 s. Actions may run long, too.
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.headersTimeout = 0;
server.on('clientError', (err, socket) => {
  // Unparseable HTTP: we cannot tell where the next request starts, so the connection ends.
  if (socket.writable) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  }
});

const socketPath = path.join(process.env.FT_PROXY_DIR || '/ft', 'proxy.sock');
const tempPath = `${socketPath}.${process.pid}`;
for (const stale of [socketPath, tempPath]) {
  try {
    fs.unlinkSync(stale);
  } catch {
    // not there
  }
}
server.listen(tempPath, () => {
  fs.chmodSync(tempPath, 0o660);
  // The socket appears under its real name only once it is listening: whoever waits for it
  // never sees a refused connection.
  fs.renameSync(tempPath, socketPath);
  diag(`listening on ${socketPath}`);
});
