// Safety numbers (docs/TRUST.md §3, Rust `crypto::safety`): Signal's numeric fingerprint over two
// users' Ed25519 identity keys and ids, 60 digits identical on both sides.

import { b64decode, concat, utf8 } from './b64.js';
import { sha512 } from './crypto.js';

export const ITERATIONS = 5200;

async function userHash(key, stableId, iterations) {
  let h = await sha512(concat(new Uint8Array([0, 0]), key, stableId, key));
  for (let i = 1; i < iterations; i++) h = await sha512(concat(h, key));
  return h;
}

function digits30(hash) {
  let out = '';
  for (let i = 0; i < 30; i += 5) {
    let n = 0;
    // Five bytes exceed 32 bits: arithmetic, not bit shifts.
    for (let j = i; j < i + 5; j++) n = n * 256 + hash[j];
    out += String(n % 100000).padStart(5, '0');
  }
  return out;
}

/** One user's 30 digits: raw 32-byte identity key and the user id. */
export async function fingerprint(keyBytes, userId, iterations = ITERATIONS) {
  return digits30(await userHash(keyBytes, utf8(userId), iterations));
}

/** The 60-digit safety number between two users (identity keys in standard base64). */
export async function safetyNumber(myKeyB64, myId, theirKeyB64, theirId) {
  const a = await fingerprint(b64decode(myKeyB64), myId);
  const b = await fingerprint(b64decode(theirKeyB64), theirId);
  return a <= b ? a + b : b + a;
}

/** Twelve groups of five, as the CLI shows them. */
export function grouped(digits) {
  return digits.match(/.{1,5}/g).join(' ');
}
