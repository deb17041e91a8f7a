// This browser's devices, kept in IndexedDB: one record per account signed in here, holding the
// device's non-extractable X25519 and Ed25519 keys (CryptoKey objects, stored as they are), the
// identity key on the device that made it, the channel and directory keys it received, the
// channels it saw listed as private or direct, the identities it pinned, and the session token.
// Clearing the site's data loses all of it.

const DB_NAME = 'dialtone';
const DB_VERSION = 1;
const DEVICES = 'devices';
const META = 'meta';

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let opened;

function db() {
  if (!opened) {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(DEVICES, { keyPath: 'username' });
      req.result.createObjectStore(META);
    };
    opened = request(req);
  }
  return opened;
}

async function tx(store, mode, fn) {
  const handle = (await db()).transaction(store, mode);
  const done = new Promise((resolve, reject) => {
    handle.oncomplete = () => resolve();
    handle.onerror = () => reject(handle.error);
    handle.onabort = () => reject(handle.error);
  });
  const result = await fn(handle.objectStore(store));
  await done;
  return result;
}

/** Usernames are compared as the server normalises them (trimmed, lower case). */
export function normalise(username) {
  return String(username).trim().toLowerCase();
}

export function loadDevice(username) {
  return tx(DEVICES, 'readonly', (s) => request(s.get(normalise(username))));
}

export function saveDevice(device) {
  return tx(DEVICES, 'readwrite', (s) => request(s.put(device)));
}

/** The account this page opened last (its username), if any. */
export function current() {
  return tx(META, 'readonly', (s) => request(s.get('current')));
}

export function setCurrent(username) {
  return tx(META, 'readwrite', (s) =>
    request(username ? s.put(normalise(username), 'current') : s.delete('current')),
  );
}

/** A fresh device record for `username`: keys made by the caller, no account yet. */
export function newDevice(username, x25519, signing, publics) {
  return {
    username: normalise(username),
    x25519,
    signing,
    public_key: publics.x25519,
    signing_public: publics.signing,
    identity: null,
    identity_public: null,
    user_id: null,
    device_id: null,
    token: null,
    is_admin: false,
    directory_key: null,
    channel_keys: {},
    generation_keys: {},
    /** channel id → `private` or `direct`, as first listed (a kind never goes back to public). */
    channel_kinds: {},
    pins: {},
    profile_published: false,
  };
}

/** Ask the browser not to evict this origin's storage; false when it would not promise. */
export async function persist() {
  if (!navigator.storage || !navigator.storage.persist) return false;
  try {
    return await navigator.storage.persist();
  } catch {
    return false;
  }
}
