// Trust v2 in the browser (docs/TRUST.md §2): signed device lists checked link by link exactly
// as the Rust client checks them (`crypto::device_list::check`), pins on first use with no
// rollback, the first list made by an account's first device, and the screen that decides which
// devices may get a key.

import { b64decode, b64encode, concat, text, utf8 } from './b64.js';
import { Context, newEd25519, publicB64, sha256, sign, verify } from './crypto.js';
import { q } from './api.js';

export const LIST_KIND = 'dialtone.device_list.v2';
const MAX_STATEMENT_BYTES = 64 * 1024;
const MAX_DEVICES = 256;
export const GENESIS_HASH = b64encode(new Uint8Array(32));

export class TrustError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const refuse = (kind, message) => {
  throw new TrustError(kind, message);
};

/** Each field length-prefixed (u32 big-endian), as `device_list::binding_bytes`. */
export function bindingBytes(userId, identityKey, device) {
  const parts = [userId, identityKey, device.device_id, device.public_key, device.signing_key].map(utf8);
  const out = [];
  for (const p of parts) {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, p.length, false);
    out.push(len, p);
  }
  return concat(...out);
}

/** This device's entry of a list under `identityKey`, countersigned by its signing key. */
export async function listedDevice(device, identityKey) {
  const entry = {
    device_id: device.device_id,
    public_key: device.public_key,
    signing_key: device.signing_public,
    binding_signature: '',
  };
  entry.binding_signature = await sign(
    device.signing,
    Context.deviceListDevice,
    bindingBytes(device.user_id, identityKey, entry),
  );
  return entry;
}

const isString = (v) => typeof v === 'string';

/** Check `signed` as the list of `userId` that follows `prev` (null: the first list). */
export async function check(signed, userId, prev) {
  let bytes;
  try {
    bytes = b64decode(signed.statement);
  } catch {
    refuse('list', 'malformed device list: statement is not standard base64');
  }
  if (bytes.length > MAX_STATEMENT_BYTES) refuse('list', 'malformed device list: statement too large');
  let st;
  try {
    st = JSON.parse(text(bytes));
  } catch {
    refuse('list', 'malformed device list: statement is not JSON');
  }
  const devices = Array.isArray(st.devices) ? st.devices : null;
  if (
    st.kind !== LIST_KIND ||
    !isString(st.user_id) ||
    !Number.isSafeInteger(st.version) ||
    !isString(st.prev_hash) ||
    !isString(st.identity_key) ||
    !devices ||
    (st.reset !== undefined && typeof st.reset !== 'boolean')
  ) {
    refuse('list', 'malformed device list');
  }
  if (st.user_id !== userId) refuse('list', 'the device list is for another user');
  if (devices.length === 0 || devices.length > MAX_DEVICES) {
    refuse('list', `malformed device list: a list holds 1 to ${MAX_DEVICES} devices`);
  }
  const seen = new Set();
  for (const d of devices) {
    if (![d.device_id, d.public_key, d.signing_key, d.binding_signature].every(isString)) {
      refuse('list', 'malformed device list: a device entry is incomplete');
    }
    if (seen.has(d.device_id)) refuse('list', `device ${d.device_id} is listed twice`);
    seen.add(d.device_id);
    let key;
    try {
      key = b64decode(d.public_key);
    } catch {
      key = null;
    }
    if (!key || key.length !== 32) refuse('list', `device ${d.device_id}: public_key is not an X25519 key`);
  }
  const current = prev ? prev.statement.version : 0;
  if (st.version !== current + 1) {
    refuse('list', `device list version ${st.version} does not follow version ${current}`);
  }
  if (st.prev_hash !== (prev ? prev.hash : GENESIS_HASH)) {
    refuse('list', "the device list's prev_hash does not match the previous list");
  }
  const reset = st.reset === true;
  if (prev && prev.statement.identity_key !== st.identity_key && !reset) {
    refuse('list', 'the identity key changed without a reset');
  }
  if ((prev && prev.statement.identity_key === st.identity_key && reset) || (!prev && reset)) {
    refuse('list', 'a reset must change the identity key');
  }
  if (!(await verify(st.identity_key, Context.deviceListIdentity, bytes, signed.identity_signature))) {
    refuse('list', 'the identity signature does not verify');
  }
  for (const d of devices) {
    const ok = await verify(
      d.signing_key,
      Context.deviceListDevice,
      bindingBytes(st.user_id, st.identity_key, d),
      d.binding_signature,
    );
    if (!ok) refuse('list', `the countersignature of device ${d.device_id} does not verify`);
  }
  return { statement: st, hash: b64encode(await sha256(bytes)), signed };
}

/**
 * Whether `e`, from `verifiedDevices` with `pin`, means the user has no list (v1 rules). Never
 * for a pinned user: their lists cannot vanish, and "no list" would let every device the server
 * adds get keys and every envelope pass (docs/TRUST.md §2.6).
 */
export function isNoList(e, pin) {
  return !pin && ((e instanceof TrustError && e.kind === 'no_list') || e.status === 404);
}

/** One page of a user's lists; with a pin, a 404 ("unknown user", "no trust v2") is a rollback. */
async function listPage(api, userId, after, pin) {
  let page;
  try {
    page = await api.get(`/devices/list?user_id=${q(userId)}&after_version=${after}`);
  } catch (e) {
    if (!(pin && e.status === 404)) throw e;
    page = null;
  }
  if (!page && pin) {
    refuse('rollback', `the server says it has no device list of a user already seen at version ${pin.version}: a rollback, refused`);
  }
  return page || { lists: [], latest_version: 0 };
}

/**
 * A user's newest list, verified from `pin` on (from version 1 without one), and how it compares
 * with the pin: `first`, `same` or `changed` (docs/TRUST.md §2.4).
 */
export async function verifiedDevices(api, userId, pin) {
  let at = null;
  let after = pin ? Math.max(pin.version - 1, 0) : 0;
  for (;;) {
    const page = await listPage(api, userId, after, pin);
    if (pin && page.latest_version < pin.version) {
      refuse(
        'rollback',
        `the server served version ${page.latest_version} of a device list already seen at version ${pin.version}: a rollback, refused`,
      );
    }
    const lists = [...page.lists];
    if (!at && pin) {
      const first = lists.shift();
      if (!first) refuse('forked', `the chain was forked at version ${pin.version}, refused`);
      const hash = b64encode(await sha256(b64decode(first.statement)));
      if (hash !== pin.hash) refuse('forked', `the chain was forked at version ${pin.version}, refused`);
      at = { statement: JSON.parse(text(b64decode(first.statement))), hash, signed: first };
    }
    for (const l of lists) at = await check(l, userId, at);
    const reached = at ? at.statement.version : 0;
    if (reached >= page.latest_version || lists.length === 0) break;
    after = reached;
  }
  if (!at) refuse('no_list', 'this user has not published a signed device list yet');
  const fresh = pinOf(at);
  if (!pin) return { list: at, verdict: 'first', pin: fresh };
  if (pin.identity_key === fresh.identity_key) {
    return { list: at, verdict: 'same', pin: { ...fresh, verified: pin.verified } };
  }
  return { list: at, verdict: 'changed', pin: fresh, pinned: pin };
}

export function pinOf(list) {
  return {
    user_id: list.statement.user_id,
    identity_key: list.statement.identity_key,
    version: list.statement.version,
    hash: list.hash,
    verified: false,
  };
}

/**
 * After sign-in (Rust `identity::after_sign_in`): an account's only device makes the identity
 * and list version 1; otherwise say where this device stands. `save` persists the device record.
 * Returns `created`, `listed`, `not_listed`, `other_devices` or `unsupported`.
 */
export async function afterSignIn(api, device, save) {
  let own = null;
  try {
    const r = await verifiedDevices(api, device.user_id, device.pins[device.user_id]);
    if (r.verdict === 'changed') {
      refuse('own_changed', 'your own identity key changed since this device pinned it: check your other devices');
    }
    own = r.list;
  } catch (e) {
    if (e.status === 404) return { state: 'unsupported' };
    if (!(e instanceof TrustError && e.kind === 'no_list')) throw e;
  }
  if (own) {
    const listed = own.statement.devices.some((d) => d.device_id === device.device_id);
    return { state: listed ? 'listed' : 'not_listed', version: own.statement.version };
  }
  const mine = await api.get('/devices');
  const others = mine.devices.filter((d) => d.id !== device.device_id).length;
  if (others > 0) return { state: 'other_devices', others };
  const identity = await newEd25519();
  device.identity = identity;
  device.identity_public = await publicB64(identity);
  // Kept before publishing: a list the server stored must never lose its key.
  await save(device);
  const statement = {
    kind: LIST_KIND,
    user_id: device.user_id,
    version: 1,
    prev_hash: GENESIS_HASH,
    identity_key: device.identity_public,
    devices: [await listedDevice(device, device.identity_public)],
    created_at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  const bytes = utf8(JSON.stringify(statement));
  const signed = {
    statement: b64encode(bytes),
    identity_signature: await sign(identity, Context.deviceListIdentity, bytes),
  };
  const list = await check(signed, device.user_id, null);
  try {
    await api.post('/devices/list', signed);
  } catch (e) {
    if (e.status === 409) return { state: 'not_listed', version: 1 };
    throw e;
  }
  device.pins[device.user_id] = { ...pinOf(list), verified: true };
  await save(device);
  return { state: 'created', version: 1 };
}

/**
 * Which of `keys` (as `GET /devices/keys?all=1` lists them) may get a key: per user, the devices
 * of their verified list with the same X25519 key; every device of an unpinned user with no list
 * (v1); none of a user whose identity changed, whose list does not verify, or who is pinned and
 * suddenly has no list (a rollback). Pins learned are stored.
 */
export async function screen(api, device, keys, save) {
  const byUser = new Map();
  for (const k of keys) {
    const user = k.user_id || device.user_id;
    if (!byUser.has(user)) byUser.set(user, []);
    byUser.get(user).push(k);
  }
  const allowed = [];
  const skipped = [];
  let pinsChanged = false;
  for (const [user, devices] of byUser) {
    const pin = device.pins[user];
    try {
      const r = await verifiedDevices(api, user, pin);
      if (r.verdict === 'changed') {
        for (const d of devices) skipped.push({ ...d, reason: "its user's identity key changed" });
        continue;
      }
      device.pins[user] = r.pin;
      pinsChanged = true;
      for (const d of devices) {
        const listed = r.list.statement.devices.some(
          (l) => l.device_id === d.device_id && l.public_key === d.public_key,
        );
        if (listed) allowed.push(d);
        else skipped.push({ ...d, reason: "not on its user's signed device list" });
      }
    } catch (e) {
      if (isNoList(e, pin)) {
        allowed.push(...devices);
      } else {
        for (const d of devices) skipped.push({ ...d, reason: `device list not verified: ${e.message}` });
      }
    }
  }
  if (pinsChanged) await save(device);
  return { allowed, skipped };
}
