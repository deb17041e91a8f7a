// Private and direct channels in the browser (docs/TRUST.md §6), as the Rust client does them:
// keys per generation in signed envelopes, texts sealed and signed with `bound.js`, every signer
// checked against its user's verified device list, new generations wrapped for exactly the
// active members' devices the trust screen allows. Nothing the server says may take a channel
// back: no envelope from a signer without a list, no generation older than one held.

import { ApiError, q } from './api.js';
import * as c from './crypto.js';
import {
  Kind,
  envelopeBytes,
  isBound,
  openBound,
  parse,
  parseEnvelope,
  sealBound,
  signedEnvelope,
  verifyBound,
} from './bound.js';
import { TrustError, check, verifiedDevices } from './trust.js';

export const DIRECT_NAME = 'direct';

const slot = (channelId, generation) => `${channelId}/${generation}`;

/** The generations of `channelId` whose key this browser holds. */
export function heldGenerations(device, channelId) {
  const prefix = `${channelId}/`;
  return Object.keys(device.generation_keys)
    .filter((s) => s.startsWith(prefix))
    .map((s) => Number(s.slice(prefix.length)));
}

/**
 * Refuse `generation` when this browser holds a newer one (`rotating`: one as new or newer). The
 * server announces the current generation; one it takes back may be held by a removed member.
 */
function refuseOlder(chat, channelId, generation, rotating) {
  const floor = Math.max(0, ...heldGenerations(chat.device, channelId));
  if (generation < floor || (rotating && generation <= floor)) {
    throw new c.CryptoError(
      `the server announced generation ${generation} of this channel, older than generation ${floor} this browser already holds: refused (a removed member may hold the older key)`,
    );
  }
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Keep a generation's key; a different key already held for it is never replaced. */
async function keepGeneration(chat, channelId, generation, key) {
  const held = chat.device.generation_keys[slot(channelId, generation)];
  if (held && !sameBytes(held, key)) {
    throw new c.CryptoError(`this browser already holds another key for generation ${generation} of this channel: refused`);
  }
  chat.device.generation_keys[slot(channelId, generation)] = key;
  await chat.save();
}

/** The users who may get a generation: the active members, less one just removed here. */
function activeMembers(m, removed = null) {
  return new Set(m.members.filter((x) => !x.removed_at && x.user_id !== removed).map((x) => x.user_id));
}

function signer(chat) {
  return { userId: chat.userId, deviceId: chat.device.device_id, keyPair: chat.device.signing };
}

/**
 * The signer device as its user's verified list names it: `{ listed }`, `{ noList: true }`
 * (a v1 user: nothing to check), or a refusal when the device was never on the list.
 */
async function author(chat, userId, deviceId) {
  const list = await chat.listOf(userId);
  if (!list) return { noList: true };
  const now = list.statement.devices.find((d) => d.device_id === deviceId);
  if (now) return { listed: now };
  // Removed since: it counts if some earlier list of the same verified chain named it.
  let at = null;
  let after = 0;
  let then = null;
  for (;;) {
    const page = await chat.api.get(`/devices/list?user_id=${q(userId)}&after_version=${after}`);
    for (const l of page.lists) {
      at = await check(l, userId, at);
      const d = at.statement.devices.find((x) => x.device_id === deviceId);
      if (d && at.statement.identity_key === list.statement.identity_key) then = d;
    }
    const reached = at ? at.statement.version : 0;
    if (reached >= page.latest_version || page.lists.length === 0) break;
    after = reached;
  }
  // Only a chain that ends at the list this page verified against its pin counts.
  if (then && at && at.hash === list.hash) return { listed: then };
  throw new TrustError('not_listed', `device ${deviceId} was never on ${chat.nameOf(userId)}’s signed device list: refused`);
}

/**
 * The wrap inside the v2 envelope of `channelId`'s `generation` for this device, once its
 * signature checks out over the channel and generation asked for (never those the answer names:
 * channel A's genuine envelope would otherwise pass as channel B's).
 */
async function checkedWrap(chat, channelId, env, generation) {
  if (
    env.channel_id !== channelId ||
    env.device_id !== chat.device.device_id ||
    (env.generation != null && env.generation !== generation)
  ) {
    throw new c.CryptoError(
      `the server answered with the envelope of channel ${env.channel_id} generation ${env.generation ?? '?'} for device ${env.device_id}: not the one asked for, refused`,
    );
  }
  const parts = parseEnvelope(env.envelope);
  if (!parts) throw new c.CryptoError('the envelope is not signed (a v2 envelope must be)');
  const [user, wrap, sig] = parts;
  const a = await author(chat, user, env.sender_device_id);
  // Taken unchecked, any key the server wrapped under a list-less account of its own would
  // become the channel's. Every v2 client publishes a list, and v1 clients cannot read v2 texts.
  if (!a.listed) {
    throw new c.CryptoError(
      `signed by ${chat.nameOf(user)}, who has no signed device list: a v2 envelope must be signed by a device of its sender’s signed device list, refused`,
    );
  }
  if (a.listed.public_key !== env.sender_public_key) {
    throw new c.CryptoError('the envelope names a sender key other than its signed device list: the server substituted it, refused');
  }
  const bytes = envelopeBytes(
    channelId,
    generation,
    chat.device.device_id,
    env.sender_device_id,
    env.sender_public_key,
    user,
    wrap,
  );
  if (!(await c.verify(a.listed.signing_key, c.Context.envelope, bytes, sig))) {
    throw new c.CryptoError('the envelope’s signature does not verify: forged, refused');
  }
  return wrap;
}

/** A private channel's key of one generation: held, or from this device's envelope. */
export async function generationKey(chat, channelId, generation) {
  const held = chat.device.generation_keys[slot(channelId, generation)];
  if (held) return held;
  const env = await chat.api.maybe(`/channels/keys?channel_id=${q(channelId)}&generation=${generation}`);
  if (!env) throw new c.CryptoError(`this device has no key for generation ${generation} of this channel`);
  const wrap = await checkedWrap(chat, channelId, env, generation);
  const key = await c.unwrapFrom(chat.device.x25519, env.sender_public_key, wrap);
  await keepGeneration(chat, channelId, generation, key);
  return key;
}

/** Open a v2 value; `senderId` (a message's sender) must be its signer. Returns { text, verified, why }. */
export async function openText(chat, channelId, kind, senderId, sealed) {
  const p = parse(sealed);
  if (senderId && p.signerUser !== senderId) {
    throw new c.CryptoError('signed by another user than its sender: re-attributed, refused');
  }
  const key = await generationKey(chat, channelId, p.generation);
  const b = { kind, channelId, generation: p.generation };
  const text = await openBound(p, key, b);
  const a = await author(chat, p.signerUser, p.signerDevice);
  if (a.noList) return { text, verified: false, why: 'the sender has no signed device list, so the signature cannot be checked' };
  if (!(await verifyBound(p, b, a.listed.signing_key))) {
    throw new c.CryptoError('the signature does not verify: forged or tampered, refused');
  }
  return { text, verified: true };
}

export async function openMessage(chat, m, base) {
  const body = await openText(chat, m.channel_id, Kind.body, base.sender_id, m.body);
  const name = await openText(chat, m.channel_id, Kind.senderName, base.sender_id, m.sender_name_enc);
  return { text: body.text, claimed: name.text, signed: body.verified, why: body.why };
}

export async function channelName(chat, ch) {
  // A v1 name would need a v1 channel key, which a private channel never has.
  if (!isBound(ch.name_enc)) throw new c.CryptoError('the channel’s name is not signed (v1), as a private channel’s must be: refused');
  return (await openText(chat, ch.id, Kind.channelName, null, ch.name_enc)).text;
}

/** The frame that sends `text` to a private or direct channel `ch` (as the server lists it now). */
export async function sealSend(chat, ch, text, clientMessageId) {
  if (ch.key_generation == null) {
    throw new c.CryptoError('The server lists this private channel without its key generation, as if it were public: refused (a private channel is never sealed v1).');
  }
  const generation = ch.key_generation;
  if (ch.rotation_required || generation === 0) {
    throw new c.CryptoError('This channel needs a new key first (a member or a device left); a channel admin’s client posts it.');
  }
  refuseOlder(chat, ch.id, generation, false);
  const key = await generationKey(chat, ch.id, generation);
  const b = (kind) => ({ kind, channelId: ch.id, generation });
  return {
    type: 'channel.message.send',
    channel_id: ch.id,
    body: await sealBound(key, b(Kind.body), signer(chat), text),
    sender_name_enc: await sealBound(key, b(Kind.senderName), signer(chat), chat.device.username),
    client_message_id: clientMessageId,
  };
}

export function members(chat, channelId) {
  return chat.api.get(`/channels/members?channel_id=${q(channelId)}`);
}

async function signedUploads(chat, channelId, generation, key, devices) {
  const out = [];
  for (const d of devices) {
    const wrap = await c.wrapFor(chat.device.x25519, d.public_key, key);
    const bytes = envelopeBytes(
      channelId,
      generation,
      d.device_id,
      chat.device.device_id,
      chat.device.public_key,
      chat.userId,
      wrap,
    );
    out.push({
      device_id: d.device_id,
      sender_device_id: chat.device.device_id,
      sender_public_key: chat.device.public_key,
      envelope: await signedEnvelope(chat.userId, chat.device.signing, wrap, bytes),
    });
  }
  return out;
}

/**
 * Wrap `key` as `generation` for the members' devices and post it; rename under it. Only devices
 * of active members in the same answer get it (never `removed`, whom this page just removed):
 * the server's `device_ids` alone could name anyone's.
 */
async function postGeneration(chat, m, generation, key, renameTo, removed = null) {
  refuseOlder(chat, m.channel_id, generation, true);
  const { allowed: wanted, skipped: blocked } = await chat.allowedDevices(null, {
    includeSelf: true,
    deviceIds: m.device_ids,
    owners: activeMembers(m, removed),
  });
  if (blocked.length) {
    throw new c.CryptoError(
      `cannot post a new key: these member devices may not get keys (${blocked.map((d) => d.reason).join('; ')}). Verify or accept their users’ identities first.`,
    );
  }
  // Above the floor, so no key of this generation was held: the one dropped below is this one.
  await keepGeneration(chat, m.channel_id, generation, key);
  try {
    await chat.api.post('/channels/rotate', {
      channel_id: m.channel_id,
      generation,
      envelopes: await signedUploads(chat, m.channel_id, generation, key, wanted),
    });
  } catch (e) {
    // Lost to another rotation, or failed: never seal under a key nobody else has.
    delete chat.device.generation_keys[slot(m.channel_id, generation)];
    await chat.save();
    throw e;
  }
  if (renameTo) {
    const nameEnc = await sealBound(key, { kind: Kind.channelName, channelId: m.channel_id, generation }, signer(chat), renameTo);
    await chat.api.call('PATCH', '/channels', { channel_id: m.channel_id, name_enc: nameEnc });
  }
}

const isAdminOf = (chat, m) =>
  m.members.some((x) => x.user_id === chat.userId && !x.removed_at && x.role === 'admin');

export async function createPrivate(chat, name) {
  const key = c.randomKey();
  const nameEnc = await sealBound(key, { kind: Kind.channelName, channelId: '', generation: 1 }, signer(chat), name);
  const res = await chat.api.post('/channels', { name_enc: nameEnc, private: true });
  await postGeneration(chat, await members(chat, res.channel.id), 1, key, name);
  return res.channel;
}

/** The direct channel with `userId`: found again, or created with generation 1 from this side. */
export async function openDirect(chat, userId) {
  const key = c.randomKey();
  const placeholder = await sealBound(key, { kind: Kind.channelName, channelId: '', generation: 1 }, signer(chat), DIRECT_NAME);
  const res = await chat.api.post('/channels/direct', { user_id: userId, name_enc: placeholder });
  const ch = res.channel;
  if ((ch.key_generation || 0) > 0) return ch;
  try {
    await postGeneration(chat, await members(chat, ch.id), 1, key, DIRECT_NAME);
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'generation_conflict')) throw e;
  }
  return ch;
}

/** This page's rotations, per channel: the last one queued. */
const rotations = new Map();

/**
 * Run `fn` once this page's previous rotation of the channel settled: two racing for the same
 * generation would each keep a key for it, and a held generation key is never replaced.
 */
function oneAtATime(channelId, fn) {
  const run = (rotations.get(channelId) || Promise.resolve()).catch(() => {}).then(fn);
  rotations.set(channelId, run);
  return run;
}

/** Removals this page is making (`channel/user`): each is followed by its own rotation. */
const removing = new Set();

async function postNext(chat, channelId, removed) {
  const m = await members(chat, channelId);
  let name = null;
  const ch = (await chat.api.get('/channels')).channels.find((x) => x.id === channelId);
  if (ch && isAdminOf(chat, m)) name = await channelName(chat, ch).catch(() => null);
  await postGeneration(chat, m, m.key_generation + 1, c.randomKey(), name, removed);
  return m.key_generation + 1;
}

/** Post the next generation (`removed`: a user just removed, left out whatever the server lists). */
export function rotate(chat, channelId, removed = null) {
  return oneAtATime(channelId, () => postNext(chat, channelId, removed));
}

/** As a channel admin, post the next generation when the channel waits for one (`removed`: as `rotate`). */
export async function rotateIfRequired(chat, channelId, removed = null) {
  // The page's own removal rotates by itself; this (its `member.removed`) would race it.
  if (removed && removing.has(`${channelId}/${removed}`)) return null;
  return oneAtATime(channelId, async () => {
    let m;
    try {
      m = await members(chat, channelId);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) return null;
      throw e;
    }
    if (!m.rotation_required || !isAdminOf(chat, m)) return null;
    try {
      return await postNext(chat, channelId, removed);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'generation_conflict') return null;
      throw e;
    }
  });
}

/** Add a member and share the current generation with their allowed devices. */
export async function addMember(chat, channelId, userId) {
  await chat.api.post('/channels/members', { channel_id: channelId, user_id: userId });
  await shareGeneration(chat, channelId, userId);
}

/**
 * Give `userId`'s allowed devices that are active in the channel its current generation (a new
 * member, or a member's new device); devices that already hold it answer 409, which is fine.
 */
export async function shareGeneration(chat, channelId, userId) {
  const m = await members(chat, channelId);
  if (m.key_generation === 0) return;
  const key = await generationKey(chat, channelId, m.key_generation);
  // A `device.joined` names any user: only an active member's devices may get the key.
  const { allowed: devices } = await chat.allowedDevices(userId, {
    deviceIds: m.device_ids,
    owners: activeMembers(m),
  });
  if (devices.length === 0) return;
  try {
    await chat.api.post('/channels/keys', {
      channel_id: channelId,
      generation: m.key_generation,
      envelopes: await signedUploads(chat, channelId, m.key_generation, key, devices),
    });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 409)) throw e;
  }
}

/** `device.joined` of `userId`: share every private generation this device can give them. */
export async function shareGenerations(chat, userId) {
  const res = await chat.api.get('/channels');
  for (const ch of res.channels) {
    if (!ch.kind || ch.kind === 'public' || !ch.key_generation) continue;
    try {
      await shareGeneration(chat, ch.id, userId);
    } catch {
      // One channel that cannot be shared (no key here, refused) does not stop the others.
    }
  }
}

/** Remove a member (or leave); someone who stays rotates at once. */
export async function removeMember(chat, channelId, userId) {
  removing.add(`${channelId}/${userId}`);
  try {
    await chat.api.call('DELETE', `/channels/members?channel_id=${q(channelId)}&user_id=${q(userId)}`);
    if (userId === chat.userId) return;
    try {
      await rotate(chat, channelId, userId);
    } catch (e) {
      // Another admin's rotation won. The server took it only if it covers exactly the members
      // left, so the removed user is out of it; rotate again only if the channel still waits.
      if (!(e instanceof ApiError && e.code === 'generation_conflict')) throw e;
      if ((await members(chat, channelId)).rotation_required) await rotate(chat, channelId, userId);
    }
  } finally {
    removing.delete(`${channelId}/${userId}`);
  }
}

/** Verified lists for this user and a contact, for their safety number. */
export async function identities(chat, userId) {
  const mine = await chat.listOf(chat.userId);
  let theirs;
  try {
    theirs = await verifiedDevices(chat.api, userId, chat.device.pins[userId]);
  } catch (e) {
    if (e instanceof TrustError && e.kind === 'no_list') return { mine, theirs: null };
    throw e;
  }
  return { mine, theirs };
}
