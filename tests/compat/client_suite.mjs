// The official `openwhisk` npm client (v3.21.9) against a running Funtainer gateway: what
// apache/openwhisk-client-js's integration tests (test/integration/*.test.js) check, written
// for node:test. Needs __OW_API_KEY, __OW_API_HOST and __OW_NAMESPACE, like upstream.
//
// Differences from upstream, on purpose: every entity gets a per-run suffix and is cleaned up
// (upstream leaves e.g. `glorfindel2` behind, so a second run against the same server would
// fail). Routes run against Funtainer's own API routes (gateway/api_routes.py) with a token,
// as upstream's routes.test.js does against OpenWhisk's API gateway.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import test from 'node:test';
import zlib from 'node:zlib';

const require = createRequire(import.meta.url);
const openwhisk = require('openwhisk');

for (const name of ['__OW_API_KEY', '__OW_API_HOST', '__OW_NAMESPACE']) {
  if (!process.env[name]) throw new Error(`${name} environment variable is required`);
}
const NAMESPACE = process.env.__OW_NAMESPACE;
const RUN = Math.random().toString(16).slice(2, 8);
const ow = openwhisk();

const unique = (name) => `${name}-${RUN}`;
const HELLO = 'function main() { return {payload: "testing"}; }';

async function rejectsWithStatus(promise, statusCode) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.statusCode, statusCode, `expected ${statusCode}, got ${err.statusCode}`);
    return true;
  });
}

// -- a zip archive on Node's built-ins (deflated entries, as `zip` makes them) --------------

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(data) {
  let crc = -1;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const packed = zlib.deflateRawSync(data);
    const fileName = Buffer.from(name);
    const fields = (header, signature) => {
      header.writeUInt32LE(signature, 0);
      return header;
    };
    const local = fields(Buffer.alloc(30), 0x04034b50);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8); // deflated
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(fileName.length, 26);
    const central = fields(Buffer.alloc(46), 0x02014b50);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(fileName.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fileName, packed);
    centrals.push(central, fileName);
    offset += local.length + fileName.length + packed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

// -- actions.test.js ------------------------------------------------------------------------

test('actions: list returns actions of the namespace', async () => {
  const actions = await ow.actions.list();
  assert.ok(Array.isArray(actions));
  for (const action of actions) assert.equal(action.namespace, NAMESPACE);
});

test('actions: get and delete of a missing action are 404', async () => {
  await rejectsWithStatus(ow.actions.get({ name: unique('glorfindel') }), 404);
  await rejectsWithStatus(ow.actions.delete({ name: unique('glorfindel') }), 404);
});

test('actions: creating an existing action is 409', async () => {
  const name = unique('glorfindel2');
  await ow.actions.create({ name, action: HELLO });
  try {
    await rejectsWithStatus(ow.actions.create({ name, action: HELLO }), 409);
  } finally {
    await ow.actions.delete({ name });
  }
});

test('actions: create, get, update, get without code, delete', async () => {
  const name = unique('random_action_test');
  const created = await ow.actions.create({ name, action: HELLO });
  assert.ok(created.exec.kind.startsWith('nodejs'));
  assert.equal(created.exec.code, HELLO);
  assert.equal(created.namespace, NAMESPACE);

  const updatedCode = 'function main() { return {payload: "update test"}; }';
  const params = [{ key: 'hello', value: 'world' }];
  const updated = await ow.actions.update({ name, action: { exec: { kind: 'nodejs:default', code: updatedCode }, parameters: params } });
  assert.equal(updated.exec.code, updatedCode);
  assert.deepEqual(updated.parameters, params);
  assert.equal(updated.version, '0.0.2');

  const fetched = await ow.actions.get({ name });
  assert.equal(fetched.exec.code, updatedCode);
  const withoutCode = await ow.actions.get({ name, code: false });
  assert.equal(withoutCode.exec.code, undefined);
  assert.ok(withoutCode.exec.kind.startsWith('nodejs'));
  await ow.actions.delete({ name });
  await rejectsWithStatus(ow.actions.get({ name }), 404);
});

test('actions: invoke /whisk.system/utils/sort blocking', async () => {
  const activation = await ow.actions.invoke({
    name: '/whisk.system/utils/sort', blocking: true, params: { lines: ['b', 'c', 'a'] },
  });
  assert.equal(activation.response.success, true);
  assert.deepEqual(activation.response.result, { lines: ['a', 'b', 'c'], length: 3 });
});

test('actions: a nodejs zip action runs and returns exactly its result', async () => {
  const name = unique('zipped_action_test');
  const archive = zip({
    'package.json': JSON.stringify({ name: 'my-action', main: 'index.js' }),
    'index.js': 'function myAction() { return {hello: "world"}; }\nexports.main = myAction;\n',
  });
  await ow.actions.create({ name, action: archive, kind: 'nodejs:default' });
  try {
    const activation = await ow.actions.invoke({ name, blocking: true });
    assert.deepEqual(activation.response.result, { hello: 'world' });
  } finally {
    await ow.actions.delete({ name });
  }
});

test('actions: non-blocking invoke answers an activation id', async () => {
  const name = unique('async_action');
  await ow.actions.create({ name, action: HELLO });
  try {
    const reply = await ow.actions.invoke({ name });
    assert.match(reply.activationId, /^[0-9a-f]{32}$/);
  } finally {
    await ow.actions.delete({ name });
  }
});

// -- activations.test.js --------------------------------------------------------------------

test('activations: list, and get, logs and result of each listed', async () => {
  const name = unique('activation_source');
  await ow.actions.create({ name, action: 'function main() { console.log("hi"); return {ok: true}; }' });
  try {
    await ow.actions.invoke({ name, blocking: true });
  } finally {
    await ow.actions.delete({ name });
  }
  const activations = await ow.activations.list({ limit: 10 });
  assert.ok(Array.isArray(activations) && activations.length > 0);
  for (const { activationId } of activations) {
    const activation = await ow.activations.get({ activationId });
    assert.equal(activation.activationId, activationId);
    assert.ok(Array.isArray((await ow.activations.logs({ activationId })).logs));
    assert.ok('result' in (await ow.activations.result({ activationId })));
  }
  const count = await ow.activations.list({ count: true });
  assert.ok(count.activations >= activations.length);
});

// -- namespaces.test.js ---------------------------------------------------------------------

test('namespaces: list and get', async () => {
  const namespaces = await ow.namespaces.list();
  assert.ok(Array.isArray(namespaces));
  assert.ok(namespaces.includes(NAMESPACE));
  const everything = await ow.namespaces.get();
  for (const collection of ['actions', 'packages', 'triggers', 'rules']) {
    assert.ok(Array.isArray(everything[collection]), collection);
  }
});

// -- packages.test.js -----------------------------------------------------------------------

test('packages: list', async () => {
  const packages = await ow.packages.list();
  assert.ok(Array.isArray(packages));
  for (const pkg of packages) assert.equal(pkg.namespace, NAMESPACE);
});

test('packages: get of a missing package is 404', async () => {
  await rejectsWithStatus(ow.packages.get({ name: unique('glorfindel') }), 404);
});

test('packages: create, update, get, delete', async () => {
  const name = unique('random_package_test');
  const created = await ow.packages.create({ name });
  assert.deepEqual(created.annotations, []);
  assert.equal(created.version, '0.0.1');
  const updated = await ow.packages.update({ name });
  assert.equal(updated.version, '0.0.2');
  const fetched = await ow.packages.get({ name });
  assert.equal(fetched.name, name);
  assert.deepEqual(fetched.actions, []);
  await ow.packages.delete({ name });
  await rejectsWithStatus(ow.packages.get({ name }), 404);
});

test('packages: the public catalog is listed and readable', async () => {
  const listed = await ow.packages.list({ namespace: 'whisk.system' });
  assert.ok(listed.some((pkg) => pkg.name === 'utils' && pkg.publish === true));
  const utils = await ow.packages.get({ name: '/whisk.system/utils' });
  assert.deepEqual(utils.actions.map((a) => a.name).sort(), ['echo', 'sort']);
});

// -- triggers.test.js -----------------------------------------------------------------------

test('triggers: list and 404', async () => {
  const triggers = await ow.triggers.list();
  assert.ok(Array.isArray(triggers));
  await rejectsWithStatus(ow.triggers.get({ name: unique('glorfindel') }), 404);
});

test('triggers: create, update, delete', async () => {
  const name = unique('random_trigger_test');
  const created = await ow.triggers.create({ name });
  assert.deepEqual(created.annotations, []);
  assert.equal(created.version, '0.0.1');
  assert.deepEqual(created.limits, {});
  const updated = await ow.triggers.update({ name });
  assert.equal(updated.version, '0.0.2');
  await ow.triggers.delete({ name });
  await rejectsWithStatus(ow.triggers.get({ name }), 404);
});

test('triggers: fire through a rule to /whisk.system/utils/echo', async () => {
  const trigger = unique('random_trigger_fire');
  const rule = unique('random_trigger_fire_rule');
  await ow.triggers.create({ name: trigger });
  await ow.rules.create({ name: rule, action: '/whisk.system/utils/echo', trigger });
  try {
    const fired = await ow.triggers.invoke({ name: trigger, params: { hello: 'world' } });
    assert.match(fired.activationId, /^[0-9a-f]{32}$/);
  } finally {
    // Upstream deletes the trigger first: the rule must still be deletable afterwards.
    await ow.triggers.delete({ name: trigger });
    await ow.rules.delete({ name: rule });
  }
});

// -- rules.test.js --------------------------------------------------------------------------

test('rules: create, get, disable, enable, update, delete', async () => {
  const trigger = unique('sample_rule_trigger');
  const action = unique('hello');
  const other = unique('tests');
  const name = unique('random_rule_test');
  await ow.triggers.create({ name: trigger });
  await ow.actions.create({ name: action, action: HELLO });
  await ow.actions.create({ name: other, action: HELLO });
  try {
    const created = await ow.rules.create({ name, action, trigger });
    assert.deepEqual(created.action, { path: NAMESPACE, name: action });
    assert.deepEqual(created.trigger, { path: NAMESPACE, name: trigger });
    assert.equal(created.status, 'active');

    const fetched = await ow.rules.get({ name });
    assert.deepEqual(fetched.action, { path: NAMESPACE, name: action });
    const listed = await ow.rules.list();
    assert.ok(listed.some((r) => r.name === name));

    await ow.rules.disable({ name });
    assert.equal((await ow.rules.get({ name })).status, 'inactive');
    await ow.rules.enable({ name });
    assert.equal((await ow.rules.get({ name })).status, 'active');

    const updated = await ow.rules.update({ name, action: other, trigger });
    assert.deepEqual(updated.action, { path: NAMESPACE, name: other });
    await ow.rules.delete({ name });
    await rejectsWithStatus(ow.rules.get({ name }), 404);
  } finally {
    await ow.triggers.delete({ name: trigger }).catch(() => {});
    await ow.actions.delete({ name: action }).catch(() => {});
    await ow.actions.delete({ name: other }).catch(() => {});
  }
});

// -- feeds.test.js --------------------------------------------------------------------------

test('feeds: alarm feed create, get, update, delete through the client', async () => {
  const trigger = unique('feed_trigger');
  const feedName = '/whisk.system/alarms/alarm';
  await ow.triggers.create({ name: trigger });
  try {
    const params = { cron: '*/8 * * * * *', trigger_payload: { name: 'test', place: 'hello' } };
    const created = await ow.feeds.create({ feedName, trigger, params });
    assert.equal(created.response.success, true);
    assert.match(created.activationId, /^[0-9a-f]{32}$/);

    const read = await ow.feeds.get({ feedName, trigger });
    assert.equal(read.response.success, true);
    assert.equal(read.response.result.config.cron, '*/8 * * * * *');

    const updated = await ow.feeds.update({ feedName, trigger, params: { cron: '*/9 * * * * *' } });
    assert.equal(updated.response.success, true);
    const reread = await ow.feeds.get({ feedName, trigger });
    assert.equal(reread.response.result.config.cron, '*/9 * * * * *');

    const deleted = await ow.feeds.delete({ feedName, trigger });
    assert.equal(deleted.response.success, true);
    await assert.rejects(ow.feeds.get({ feedName, trigger }));
  } finally {
    await ow.triggers.delete({ name: trigger }).catch(() => {});
  }
});

// The feed action fails, so its blocking invoke answers 502 with the error, as in OpenWhisk.
test('feeds: a bad schedule is refused', async () => {
  const trigger = unique('feed_bad');
  await ow.triggers.create({ name: trigger });
  try {
    await assert.rejects(
      ow.feeds.create({ feedName: '/whisk.system/alarms/alarm', trigger, params: { cron: 'nope' } }),
      (err) => err.statusCode === 502 && err.error.response.result.error.includes("'cron'"),
    );
  } finally {
    await ow.triggers.delete({ name: trigger }).catch(() => {});
  }
});

// -- sequences and web actions (actions.test.js creates a sequence; web actions by URL) -----

test('actions: a sequence over the catalog echoes its components and runs them', async () => {
  const name = unique('seq');
  const created = await ow.actions.create({ name, sequence: ['/whisk.system/utils/echo'] });
  try {
    assert.deepEqual(created.exec.components, ['/whisk.system/utils/echo']);
    const result = await ow.actions.invoke({ name, blocking: true, result: true,
                                             params: { via: 'sequence' } });
    assert.deepEqual(result, { via: 'sequence' });
  } finally {
    await ow.actions.delete({ name });
  }
});

test('actions: a web action created with web-export answers its URL', async () => {
  const name = unique('web');
  const action = 'function main(p) { return {statusCode: 201, headers: {"x-seen": p.who}, ' +
    'body: {hello: p.who}}; }';
  await ow.actions.create({ name, action, annotations: { 'web-export': true } });
  try {
    const url = `${process.env.__OW_API_HOST}/api/v1/web/${NAMESPACE}/default/${name}.http?who=npm`;
    const response = await fetch(url);
    assert.equal(response.status, 201);
    assert.equal(response.headers.get('x-seen'), 'npm');
    assert.deepEqual(await response.json(), { hello: 'npm' });
  } finally {
    await ow.actions.delete({ name });
  }
});

// -- routes.test.js -------------------------------------------------------------------------

test('routes: create, retrieve and delete action route using token', async () => {
  const actionName = unique('routeAction');
  const basepath = `/testing-${RUN}`;
  await ow.actions.create({ actionName, action: '' });
  try {
    await ow.routes.create({ action: actionName, basepath, relpath: '/foo/bar',
                             operation: 'POST' });
    const results = await ow.routes.list({ basepath });
    assert.equal(results.apis.length, 1);
    const apidoc = results.apis[0].value.apidoc;
    assert.equal(apidoc.basePath, basepath);
    assert.ok(Object.hasOwn(apidoc.paths, '/foo/bar'));
    const path = apidoc.paths['/foo/bar'];
    assert.ok(Object.hasOwn(path, 'post'));
    assert.equal(path.post['x-openwhisk'].action, actionName);
    await ow.routes.delete({ basepath });
    assert.equal((await ow.routes.list({ basepath })).apis.length, 0);
  } finally {
    await ow.actions.delete({ actionName });
  }
});
