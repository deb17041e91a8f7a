// Sealing for private and direct channels (docs/TRUST.md §6.4), exactly as the Rust client's
// `client::trust::bound`: a value is
//   v2.<generation>.<base64(nonce ‖ ciphertext ‖ tag)>.<signer user>.<signer device>.<base64(sig)>
// with AAD `dialtone/v2/<kind>\n<channel>\n<generation>\n<user>\n<device>`, and the signer device's
// Ed25519 signature over "dialtone-v2 sealed\0" ‖ AAD ‖ "\n" ‖ payload.

import { utf8 } from './b64.js';
import { Context, CryptoError, open, seal, sign, verify } from './crypto.js';

export const V2 = 'v2.';
export const Kind = Object.freeze({ body: 'body', senderName: 'sender_name', channelName: 'channel_name' });

/** Only the characters of the server's UUIDs travel inside a value and its AAD. */
export function isPlainId(id) {
  return typeof id === 'string' && id.length > 0 && id.length <= 64 && /^[A-Za-z0-9-]+$/.test(id);
}

export function isBound(sealed) {
  return typeof sealed === 'string' && sealed.startsWith(V2);
}

/** The generation a v2 value names (`protocol::members::body_generation`), or null. */
export function generationOf(sealed) {
  if (!isBound(sealed)) return null;
  const rest = sealed.slice(V2.length);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot > 18 || dot === rest.length - 1) return null;
  const digits = rest.slice(0, dot);
  if (!/^[0-9]+$/.test(digits) || (digits.length > 1 && digits.startsWith('0'))) return null;
  const g = Number(digits);
  return Number.isSafeInteger(g) && g >= 1 ? g : null;
}

function aad(b, user, device) {
  return `dialtone/v2/${b.kind}\n${b.channelId}\n${b.generation}\n${user}\n${device}`;
}

/** Seal `text` under the generation's key, bound to `b`, signed by `signer` ({userId, deviceId, keyPair}). */
export async function sealBound(key, b, signer, text) {
  const a = aad(b, signer.userId, signer.deviceId);
  const payload = await seal(key, utf8(text), utf8(a));
  const sig = await sign(signer.keyPair, Context.sealed, utf8(`${a}\n${payload}`));
  return `${V2}${b.generation}.${payload}.${signer.userId}.${signer.deviceId}.${sig}`;
}

/** Take a v2 value apart (no key needed); throws when it is not one. */
export function parse(sealed) {
  const generation = generationOf(sealed);
  if (generation === null) throw new CryptoError('not a signed v2 sealed value');
  const parts = sealed.slice(V2.length).split('.').slice(1);
  if (parts.length !== 4) throw new CryptoError('not a signed v2 sealed value');
  const [payload, signerUser, signerDevice, signature] = parts;
  if (!payload || !signature || !isPlainId(signerUser) || !isPlainId(signerDevice)) {
    throw new CryptoError('not a signed v2 sealed value');
  }
  return { generation, payload, signerUser, signerDevice, signature };
}

/** Decrypt a parsed value where it claims to belong; a moved or re-attributed value fails. */
export async function openBound(parsed, key, b) {
  if (parsed.generation !== b.generation) {
    throw new CryptoError(`sealed under generation ${parsed.generation}, not ${b.generation}`);
  }
  try {
    const bytes = await open(key, parsed.payload, utf8(aad(b, parsed.signerUser, parsed.signerDevice)));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CryptoError(
      'authentication failed: wrong key, tampered, or moved from another channel, sender or field',
    );
  }
}

export function verifyBound(parsed, b, signingKey) {
  const a = aad(b, parsed.signerUser, parsed.signerDevice);
  return verify(signingKey, Context.sealed, utf8(`${a}\n${parsed.payload}`), parsed.signature);
}

/** The bytes a device signs for a v2 key envelope (`bound::envelope_bytes`). */
export function envelopeBytes(channelId, generation, target, senderDevice, senderPublicKey, signerUser, wrap) {
  return utf8(`${channelId}\n${generation}\n${target}\n${signerUser}\n${senderDevice}\n${senderPublicKey}\n${wrap}`);
}

export async function signedEnvelope(signerUser, keyPair, wrap, bytes) {
  return `${V2}${signerUser}.${wrap}.${await sign(keyPair, Context.envelope, bytes)}`;
}

/** [signer user, wrap, signature] of a v2 envelope; null for a v1 (unsigned) one. */
export function parseEnvelope(envelope) {
  if (!isBound(envelope)) return null;
  const parts = envelope.slice(V2.length).split('.');
  if (parts.length !== 3) return null;
  const [user, wrap, sig] = parts;
  return isPlainId(user) && wrap && sig ? [user, wrap, sig] : null;
}
