// Private and direct channels in the browser (docs/TRUST.md §6), as the Rust client does them:
// keys per generation in signed envelopes, texts sealed and signed with `bound.js`, every signer
// checked against its user's verified device list, new generations wrapped for exactly the
// members' devices the trust screen allows.

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

/** The wrap inside a v2 envelope for this device, once its signature checks out. */
async function checkedWrap(chat, env, generation) {
  const parts = parseEnvelope(env.envelope);
  if (!parts) throw new c.CryptoError('the envelope is not signed (a v2 envelope must be)');
  const [user, wrap, sig] = parts;
  const a = await author(chat, user, env.sender_device_id);
  if (a.listed) {
    if (a.listed.public_key !== env.sender_public_key) {
      throw new c.CryptoError('the envelope names a sender key other than its signed device list: the server substituted it, refused');
    }
    const bytes = envelopeBytes(
      env.channel_id,
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
  }
  return wrap;
}

/** A private channel's key of one generation: held, or from this device's envelope. */
export async function generationKey(chat, channelId, generation) {
  const held = chat.device.generation_keys[slot(channelId, generation)];
  if (held) return held;
  const env = await chat.api.maybe(`/channels/keys?channel_id=${q(channelId)}&generation=${generation}`);
  if (!env) throw new c.CryptoError(`this device has no key for generation ${generation} of this channel`);
  const wrap = await checkedWrap(chat, env, generation);
  const key = await c.unwrapFrom(chat.device.x25519, env.sender_public_key, wrap);
  chat.device.generation_keys[slot(channelId, generation)] = key;
  await chat.save();
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
  if (a.noList) return { text, verified: false, why: 'the sender has no signed device list' };
  if (!(await verifyBound(p, b, a.listed.signing_key))) {
    throw new c.CryptoError('the signature does not verify: forged or tampered, refused');
  }
  return { text, verified: true };
}

export async function openMessage(chat, m, base) {
  const body = await openText(chat, m.channel_id, Kind.body, base.sender_id, m.body);
  const name = await openText(chat, m.channel_id, Kind.senderName, base.sender_id, m.sender_name_enc);
  return { text: body.text, claimed: name.text, signed: body.verified };
}

export async function channelName(chat, ch) {
  if (!isBound(ch.name_enc)) return null;
  return (await openText(chat, ch.id, Kind.channelName, null, ch.name_enc)).text;
}

export async function sealSend(chat, ch, text, clientMessageId) {
  const generation = ch.key_generation || 0;
  if (ch.rotation_required || generation === 0) {
    throw new c.CryptoError('This channel needs a new key first (a member or a device left); a channel admin’s client posts it.');
  }
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

/** Wrap `key` as `generation` for exactly the members' devices and post it; rename under it. */
async function postGeneration(chat, m, generation, key, renameTo) {
  const { allowed: wanted, skipped: blocked } = await chat.allowedDevices(null, {
    includeSelf: true,
    deviceIds: m.device_ids,
  });
  if (blocked.length) {
    throw new c.CryptoError(
      `cannot post a new key: these member devices may not get keys (${blocked.map((d) => d.reason).join('; ')}). Verify or accept their users’ identities first.`,
    );
  }
  chat.device.generation_keys[slot(m.channel_id, generation)] = key;
  await chat.save();
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

export async function rotate(chat, channelId) {
  const m = await members(chat, channelId);
  let name = null;
  const ch = (await chat.api.get('/channels')).channels.find((x) => x.id === channelId);
  if (ch && isAdminOf(chat, m)) name = await channelName(chat, ch).catch(() => null);
  await postGeneration(chat, m, m.key_generation + 1, c.randomKey(), name);
  return m.key_generation + 1;
}

/** As a channel admin, post the next generation when the channel waits for one. */
export async function rotateIfRequired(chat, channelId) {
  let m;
  try {
    m = await members(chat, channelId);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) return null;
    throw e;
  }
  if (!m.rotation_required || !isAdminOf(chat, m)) return null;
  try {
    return await rotate(chat, channelId);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'generation_conflict') return null;
    throw e;
  }
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
  const { allowed: devices } = await chat.allowedDevices(userId, { deviceIds: m.device_ids });
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
  await chat.api.call('DELETE', `/channels/members?channel_id=${q(channelId)}&user_id=${q(userId)}`);
  if (userId === chat.userId) return;
  try {
    await rotate(chat, channelId);
  } catch (e) {
    // Another rotation won: this page's own `member.removed` handler, or another admin. The
    // server took it only if it covers exactly the members left, so the removed user is out of
    // it; rotate again only if the channel still waits for one.
    if (!(e instanceof ApiError && e.code === 'generation_conflict')) throw e;
    if ((await members(chat, channelId)).rotation_required) await rotate(chat, channelId);
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
