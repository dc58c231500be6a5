'use strict';
// A small zip extractor for zip actions, on Node's built-ins only (part of the proxy, see
// proxy.js). It reads the archive from memory: no temp copy of the zip in the small /tmp
// tmpfs, no `unzip` process (an extra package in the base image, a fork of a big process and
// a pid against the container's limit), and we decide ourselves what a safe entry name is.
//
// Supported: stored and deflated entries, zip64 sizes and offsets, Unix modes (executable
// bits, symlinks). Not supported: encryption, multi-disk archives, other compression methods.

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

class ZipError extends Error {}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const UNIX_HOST = 3; // "version made by" high byte: external attributes hold a Unix mode
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

// CRC-32 (IEEE), table-driven: zlib.crc32 only exists from Node 22 on.
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function crc32(buf) {
  let crc = -1;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

function u64(buf, offset) {
  const value = buf.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError('zip64 value out of range');
  return Number(value);
}

// Where the central directory is and how many entries it has, from the end records.
function findDirectory(buf) {
  // The end record is 22 bytes plus a comment of at most 65535: search backwards from there.
  const lowest = Math.max(0, buf.length - 22 - 0xffff);
  let eocd = -1;
  for (let i = buf.length - 22; i >= lowest; i--) {
    if (buf.readUInt32LE(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('no end of central directory record (not a zip file?)');
  if (buf.readUInt16LE(eocd + 4) !== 0 || buf.readUInt16LE(eocd + 6) !== 0) {
    throw new ZipError('multi-disk archives are not supported');
  }
  let count = buf.readUInt16LE(eocd + 10);
  let offset = buf.readUInt32LE(eocd + 16);
  const locator = eocd - 20;
  if (locator >= 0 && buf.readUInt32LE(locator) === ZIP64_LOCATOR_SIG) {
    const record = u64(buf, locator + 8);
    if (record + 56 > buf.length || buf.readUInt32LE(record) !== ZIP64_EOCD_SIG) {
      throw new ZipError('bad zip64 end of central directory record');
    }
    count = u64(buf, record + 32);
    offset = u64(buf, record + 48);
  }
  return { count, offset };
}

// Sizes and offset that do not fit 32 bits are 0xffffffff in the header and follow, in this
// order and only for those fields, in the zip64 extra field (id 1).
function applyZip64(entry, extra) {
  let pos = 0;
  while (pos + 4 <= extra.length) {
    const id = extra.readUInt16LE(pos);
    const size = extra.readUInt16LE(pos + 2);
    if (id === 1) {
      let field = pos + 4;
      for (const key of ['size', 'compressedSize', 'localOffset']) {
        if (entry[key] === 0xffffffff) {
          entry[key] = u64(extra, field);
          field += 8;
        }
      }
      return;
    }
    pos += 4 + size;
  }
}

function readEntries(buf) {
  const { count, offset } = findDirectory(buf);
  const entries = [];
  let pos = offset;
  for (let i = 0; i < count; i++) {
    if (pos + 46 > buf.length || buf.readUInt32LE(pos) !== CENTRAL_SIG) {
      throw new ZipError('bad central directory entry');
    }
    const flags = buf.readUInt16LE(pos + 8);
    const nameLength = buf.readUInt16LE(pos + 28);
    const extraLength = buf.readUInt16LE(pos + 30);
    const commentLength = buf.readUInt16LE(pos + 32);
    const nameBytes = buf.subarray(pos + 46, pos + 46 + nameLength);
    const entry = {
      // Bit 11: the name is UTF-8; otherwise it is CP437, of which ASCII is what matters.
      name: nameBytes.toString(flags & 0x800 ? 'utf8' : 'latin1'),
      encrypted: Boolean(flags & 1),
      method: buf.readUInt16LE(pos + 10),
      crc: buf.readUInt32LE(pos + 16),
      compressedSize: buf.readUInt32LE(pos + 20),
      size: buf.readUInt32LE(pos + 24),
      unixMode: buf.readUInt8(pos + 5) === UNIX_HOST ? buf.readUInt32LE(pos + 38) >>> 16 : 0,
      localOffset: buf.readUInt32LE(pos + 42),
    };
    applyZip64(entry, buf.subarray(pos + 46 + nameLength, pos + 46 + nameLength + extraLength));
    entries.push(entry);
    pos += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function entryData(buf, entry) {
  if (entry.encrypted) throw new ZipError(`${entry.name}: encrypted entries are not supported`);
  const local = entry.localOffset;
  if (local + 30 > buf.length || buf.readUInt32LE(local) !== LOCAL_SIG) {
    throw new ZipError(`${entry.name}: bad local header`);
  }
  // The local header's own name and extra lengths, which may differ from the central ones.
  const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
  const raw = buf.subarray(start, start + entry.compressedSize);
  if (raw.length !== entry.compressedSize) throw new ZipError(`${entry.name}: truncated`);
  let data;
  if (entry.method === 0) {
    data = raw;
  } else if (entry.method === 8) {
    try {
      data = zlib.inflateRawSync(raw);
    } catch (err) {
      throw new ZipError(`${entry.name}: ${err.message}`);
    }
  } else {
    throw new ZipError(`${entry.name}: compression method ${entry.method} is not supported`);
  }
  if (data.length !== entry.size || crc32(data) !== entry.crc) {
    throw new ZipError(`${entry.name}: corrupt data (size or CRC mismatch)`);
  }
  return data;
}

// The entry's path inside root, or an error for names that would land outside it.
function targetPath(root, name) {
  // Some Windows tools write backslashes, which the zip format does not allow.
  const clean = name.replace(/\\/g, '/');
  const target = path.resolve(root, clean);
  if (clean.startsWith('/') || (target !== root && !target.startsWith(root + path.sep))) {
    throw new ZipError(`${name}: entry path leaves the extraction directory`);
  }
  return target;
}

/** Extract the zip archive in ``buf`` into the existing directory ``root``. */
function extractZip(buf, root) {
  const entries = readEntries(buf);
  const links = [];
  for (const entry of entries) {
    const target = targetPath(root, entry.name);
    const type = entry.unixMode & S_IFMT;
    if (entry.name.endsWith('/') || type === S_IFDIR) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    const data = entryData(buf, entry);
    if (type === S_IFLNK) {
      links.push([target, data.toString('utf8')]);
      continue;
    }
    fs.mkdirSync(path.dirname(target), { recursive: true });
    // Keep the archive's permission bits (executables stay executable), always owner-writable.
    const mode = entry.unixMode & 0o777 ? (entry.unixMode & 0o777) | 0o600 : 0o644;
    fs.writeFileSync(target, data, { mode });
  }
  // Symlinks last: a later entry can then never be written through one to outside root.
  for (const [target, linkTarget] of links) {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.symlinkSync(linkTarget, target);
  }
  return entries.length;
}

module.exports = { extractZip, ZipError, crc32 };
