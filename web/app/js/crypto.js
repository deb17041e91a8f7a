// The E2E primitives of docs/TRUST.md and SPEC §7, in WebCrypto, byte for byte as the Rust client
// (`crypto::e2e`, `crypto::sign`): X25519 device keys, pairwise keys by HKDF-SHA256 with
// info `dialtone-e2e-v1`, AES-256-GCM as base64(nonce ‖ ciphertext ‖ tag), Ed25519 signatures over
// a context string and the message.
//
// Device keys are generated non-extractable: the page can use them, never read them out.

import { b64decode, b64encode, concat, text, utf8 } from './b64.js';

const subtle = globalThis.crypto.subtle;
const PAIRWISE_INFO = utf8('dialtone-e2e-v1');
const NONCE_LEN = 12;
const TAG_LEN = 16;

export class CryptoError extends Error {}

/** What each signature is for; the bytes prefix the signed message (Rust `SignContext`). */
export const Context = Object.freeze({
  deviceListIdentity: 'dialtone-v2 device-list identity\0',
  deviceListDevice: 'dialtone-v2 device-list device\0',
  sealed: 'dialtone-v2 sealed\0',
  envelope: 'dialtone-v2 envelope\0',
  profile: 'dialtone-v2 profile\0',
});

/** A fresh X25519 key pair; the private half cannot be exported. */
export function newX25519() {
  return subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
}

/** A fresh Ed25519 key pair (a device signing key or an identity key), not exportable. */
export function newEd25519() {
  return subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
}

/** A public key as the server and the lists carry it: standard base64 of the 32 raw bytes. */
export async function publicB64(keyPair) {
  return b64encode(new Uint8Array(await subtle.exportKey('raw', keyPair.publicKey)));
}

export function randomKey() {
  return globalThis.crypto.getRandomValues(new Uint8Array(32));
}

function rawPublic(b64, what) {
  let raw;
  try {
    raw = b64decode(b64);
  } catch {
    throw new CryptoError(`${what} is not standard base64`);
  }
  if (raw.length !== 32) throw new CryptoError(`${what} is not 32 bytes`);
  return raw;
}

/** HKDF-SHA256 over X25519(mine, peer): the key two devices share. */
export async function pairwiseKey(myKeyPair, peerB64) {
  const peer = await subtle.importKey(
    'raw',
    rawPublic(peerB64, 'public key'),
    { name: 'X25519' },
    true,
    [],
  );
  let shared;
  try {
    shared = new Uint8Array(
      await subtle.deriveBits({ name: 'X25519', public: peer }, myKeyPair.privateKey, 256),
    );
  } catch {
    throw new CryptoError('peer public key gives an all-zero shared secret');
  }
  if (shared.every((b) => b === 0)) {
    throw new CryptoError('peer public key gives an all-zero shared secret');
  }
  const ikm = await subtle.importKey('raw', shared, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: PAIRWISE_INFO },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

function aesKey(raw) {
  return subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** AES-256-GCM seal: base64(nonce ‖ ciphertext ‖ tag); `aad` binds where it belongs (v2). */
export async function seal(rawKey, plaintext, aad = new Uint8Array(0)) {
  const nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_LEN));
  const sealed = await subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: aad },
    await aesKey(rawKey),
    plaintext,
  );
  return b64encode(concat(nonce, new Uint8Array(sealed)));
}

/** Open a value made by `seal` with the same `aad`; tampering or the wrong key throws. */
export async function open(rawKey, b64, aad = new Uint8Array(0)) {
  let blob;
  try {
    blob = b64decode(b64);
  } catch {
    throw new CryptoError('ciphertext is not standard base64');
  }
  if (blob.length < NONCE_LEN + TAG_LEN) throw new CryptoError('ciphertext too short');
  try {
    const plain = await subtle.decrypt(
      { name: 'AES-GCM', iv: blob.subarray(0, NONCE_LEN), additionalData: aad },
      await aesKey(rawKey),
      blob.subarray(NONCE_LEN),
    );
    return new Uint8Array(plain);
  } catch {
    throw new CryptoError('authentication failed (wrong key or tampered)');
  }
}

export async function sealText(rawKey, value, aad) {
  return seal(rawKey, utf8(value), aad);
}

export async function openText(rawKey, b64, aad) {
  const bytes = await open(rawKey, b64, aad);
  try {
    return text(bytes);
  } catch {
    throw new CryptoError('plaintext is not UTF-8');
  }
}

/** Wrap a 32-byte key for the device whose X25519 key is `peerB64` (an envelope). */
export async function wrapFor(myKeyPair, peerB64, key) {
  return seal(await pairwiseKey(myKeyPair, peerB64), key);
}

/** Unwrap an envelope sealed for this device by the device whose key is `senderB64`. */
export async function unwrapFrom(myKeyPair, senderB64, envelope) {
  const key = await open(await pairwiseKey(myKeyPair, senderB64), envelope);
  if (key.length !== 32) throw new CryptoError('envelope does not hold a 32-byte key');
  return key;
}

/** Ed25519 over the context and the message: standard base64 of the 64-byte signature. */
export async function sign(keyPair, context, message) {
  const sig = await subtle.sign({ name: 'Ed25519' }, keyPair.privateKey, concat(utf8(context), message));
  return b64encode(new Uint8Array(sig));
}

/** Whether `sigB64` is `publicB64`'s signature over the context and the message. */
export async function verify(publicKeyB64, context, message, sigB64) {
  let sig;
  let key;
  try {
    sig = b64decode(sigB64);
    key = await subtle.importKey('raw', rawPublic(publicKeyB64, 'signing key'), { name: 'Ed25519' }, true, [
      'verify',
    ]);
  } catch {
    return false;
  }
  if (sig.length !== 64) return false;
  try {
    return await subtle.verify({ name: 'Ed25519' }, key, sig, concat(utf8(context), message));
  } catch {
    return false;
  }
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle.digest('SHA-256', bytes));
}

export async function sha512(bytes) {
  return new Uint8Array(await subtle.digest('SHA-512', bytes));
}
