'use strict';
// Loading an action's code in the worker (part of the proxy, see proxy.js): source actions,
// zip actions (CommonJS or ES module), and the entry point's lookup; plus the error reports
// an action's author gets in its log, without the proxy's own stack frames.

const fs = require('fs');
const Module = require('module');
const path = require('path');

const NO_CODE = 'Missing main/no code to execute.';
const NO_ZIP_ENTRY = 'Zipped actions must contain either package.json or index.js at the root.';

/** /init failed; the message is the error returned to the invoker, ``detail`` (a stack) goes
 * to the activation's log before it. */
class InitError extends Error {
  constructor(message, detail = null) {
    super(message);
    this.detail = detail;
  }
}

/** The stack without the frames of the proxy and of Node's module loader that lead into the
 * action's code: what the action's author needs, like the Python proxy's tracebacks. */
function describe(err) {
  if (!(err instanceof Error) && !(err && typeof err.stack === 'string')) {
    return `The action failed with ${require('util').inspect(err)}`;
  }
  const ours = __dirname + path.sep;
  const proxyFrame = (line) =>
    /^\s+at /.test(line) && (line.includes(ours) || line.includes('node:internal/'));
  return String(err.stack)
    .split('\n')
    .filter((line) => !proxyFrame(line))
    .join('\n');
}

/** The error value of a failed activation: an Error's message, other thrown values as they
 * are (when they are JSON), like OpenWhisk's Node.js runtime. */
function errorValue(err) {
  if (err instanceof Error || (err && typeof err.message === 'string')) {
    return err.message || err.name || 'Error';
  }
  if (err === undefined || err === null) return 'The action failed without giving a reason.';
  try {
    if (JSON.stringify(err) !== undefined) return err;
  } catch {
    // not JSON: described below
  }
  return String(err);
}

/** SyntaxError raised while compiling ``where`` (a file or directory), rather than one the
 * action's own code threw while running (JSON.parse, say): no frame of it is in the stack. */
function isCompileError(err, where) {
  if (!(err instanceof SyntaxError)) return false;
  return !String(err.stack)
    .split('\n')
    .some((line) => /^\s+at /.test(line) && line.includes(where));
}

/** The InitError for an error thrown while compiling or first running the action's code. */
function loadError(err, where) {
  if (!isCompileError(err, where)) {
    return new InitError(`The action failed during initialization: ${err}`, describe(err));
  }
  // Node puts "<file>:<line>" above the offending source line at the top of the stack.
  const at = /^(.+):(\d+)\n/.exec(String(err.stack));
  const line = at ? ` (${path.basename(at[1])}, line ${at[2]})` : '';
  return new InitError(
    `The action's code has a syntax error: ${err.message}${line}`,
    describe(err),
  );
}

/** ``exports[entry]``, where ``entry`` may be a dotted path as OpenWhisk allows for zips. */
function lookup(exports, entry) {
  let value = exports;
  for (const part of entry.split('.')) {
    if (value === null || value === undefined) return undefined;
    value = value[part];
  }
  return value;
}

function isIdentifier(name) {
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) return false;
  try {
    new Function(name); // eslint-disable-line no-new-func -- rejects reserved words
    return true;
  } catch {
    return false;
  }
}

/** A source action: compiled as a CommonJS module (require, module, exports, dynamic import
 * all work). Its entry point may be a top-level function, which a module does not export:
 * a line appended to the code returns it from the module's wrapper function. */
function loadSource(code, entry) {
  const filename = path.join(process.cwd(), 'action.js');
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = Module._nodeModulePaths(path.dirname(filename));
  const exports = mod.exports;
  const trailer = isIdentifier(entry)
    ? `\n;try { return ${entry}; } catch (e) { if (!(e instanceof ReferenceError)) throw e; }`
    : '';
  let local;
  try {
    local = mod._compile(code + trailer, filename);
  } catch (err) {
    throw loadError(err, filename);
  }
  mod.loaded = true;
  if (typeof local === 'function') return local;
  const exported = lookup(mod.exports, entry);
  return exported === undefined ? lookup(exports, entry) : exported;
}

/** A zip action: extracted into a fresh directory under /tmp (the only writable place) and
 * required from there, so package.json's "main" and node_modules work as usual. */
async function loadZip(code, entry) {
  const os = require('os');
  const { extractZip, ZipError } = require('./_ft_unzip');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'action-'));
  try {
    extractZip(Buffer.from(code, 'base64'), root);
  } catch (err) {
    const what =
      err instanceof ZipError ? 'is not a valid base64-encoded zip' : 'could not be extracted';
    throw new InitError(`The action's code ${what}: ${err.message}`);
  }
  if (!['package.json', 'index.js'].some((name) => fs.existsSync(path.join(root, name)))) {
    throw new InitError(NO_ZIP_ENTRY);
  }
  process.chdir(root); // relative paths in the action then find its own files
  let exports;
  try {
    exports = require(root);
  } catch (err) {
    if (err.code !== 'ERR_REQUIRE_ESM') throw loadError(err, root);
    // "type": "module" or an .mjs main: an ES module, loaded as one.
    const { pathToFileURL } = require('url');
    try {
      exports = await import(pathToFileURL(require.resolve(root)).href);
    } catch (esmErr) {
      throw loadError(esmErr, root);
    }
    const found = lookup(exports, entry);
    return found === undefined && exports.default ? lookup(exports.default, entry) : found;
  }
  return lookup(exports, entry);
}

/** The action's entry point, from /init's ``value``; throws InitError. */
async function loadAction(value) {
  const code = value.code;
  if (!code || (typeof code === 'string' && !code.trim())) throw new InitError(NO_CODE);
  if (typeof code !== 'string') throw new InitError("The action's code is not a string.");
  const entry = typeof value.main === 'string' && value.main ? value.main : 'main';
  const main = value.binary ? await loadZip(code, entry) : loadSource(code, entry);
  if (typeof main !== 'function') {
    throw new InitError(`Action entrypoint '${entry}' is not a function.`);
  }
  return main;
}

module.exports = { InitError, loadAction, describe, errorValue };
