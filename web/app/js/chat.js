// One signed-in device's chat (the browser's counterpart of the Rust `client::Chat`): the
// directory key and signed profile names, public channels under their v1 channel keys, history,
// sealing a send, and sharing the keys this device holds with devices that join — only with
// devices the trust screen allows. A channel once seen private stays private here: it never gets,
// uses or shares a v1 key, whatever the server lists later.

import { Api, ApiError, q } from './api.js';
import { utf8 } from './b64.js';
import * as c from './crypto.js';
import { afterSignIn, isNoList, screen, verifiedDevices } from './trust.js';
import { saveDevice } from './store.js';
import { isBound } from './bound.js';
import * as priv from './private.js';

export const PAGE = 50;

export class ChatError extends Error {}

const V1_UNSIGNED = 'not signed (dialtone v1): any member holding the channel key could have written it, under any name';

export class Chat {
  constructor(device) {
    this.device = device;
    this.api = new Api(device.token);
    /** user id → { name, verified } from the directory. */
    this.names = new Map();
    /** user id → verified device list (cleared on `device_list.updated`). */
    this.lists = new Map();
    /** device id → owner user id, as the server listed it. */
    this.owners = new Map();
    // Records made before kinds were kept have none yet.
    device.channel_kinds = device.channel_kinds || {};
    /** Whether `kindOf` recorded a kind not saved yet. */
    this.kindsChanged = false;
  }

  save() {
    return saveDevice(this.device);
  }

  get userId() {
    return this.device.user_id;
  }

  // ---- identity and the directory ----

  /** After register or login: the identity on a first device, keys, the signed profile. */
  async settle({ first }) {
    const notes = [];
    try {
      const r = await afterSignIn(this.api, this.device, (d) => saveDevice(d));
      if (r.state === 'created') notes.push('This device made your identity key and signed device list.');
      if (r.state === 'not_listed') {
        notes.push(
          'This device is not on your signed device list yet: other people’s clients will not share keys with it until one of your listed devices signs it in.',
        );
      }
    } catch (e) {
      notes.push(`Could not check this device’s identity: ${e.message}`);
    }
    try {
      if (first && this.device.is_admin) await this.ensureDirectoryKey();
      await this.refresh();
    } catch (e) {
      notes.push(`Could not fetch keys yet: ${e.message}`);
    }
    return notes;
  }

  async refresh() {
    if (!this.device.directory_key) await this.fetchDirectoryKey();
    await this.publishProfile();
  }

  async fetchDirectoryKey() {
    const env = await this.api.get('/directory/keys');
    if (!env) return false;
    await this.checkV1Sender(env.sender_device_id, env.sender_public_key, 'the directory key');
    this.device.directory_key = await c.unwrapFrom(this.device.x25519, env.sender_public_key, env.envelope);
    await this.save();
    return true;
  }

  /** The very first user makes the directory key (nobody else can hold one yet). */
  async ensureDirectoryKey() {
    if (this.device.directory_key || (await this.fetchDirectoryKey())) return;
    const profiles = await this.api.get('/users/profiles');
    if (profiles.profiles.length > 0) return;
    this.device.directory_key = c.randomKey();
    await this.save();
    await this.shareDirectoryKey(null);
  }

  async publishProfile() {
    if (this.device.profile_published || !this.device.directory_key) return;
    const nameEnc = await c.sealText(this.device.directory_key, this.device.username);
    const signature = await c.sign(
      this.device.signing,
      c.Context.profile,
      utf8(`${this.device.user_id}\n${this.device.device_id}\n${nameEnc}`),
    );
    await this.api.post('/users/profiles', {
      name_enc: nameEnc,
      signature: { device_id: this.device.device_id, signature },
    });
    this.device.profile_published = true;
    await this.save();
  }

  /** A user's verified device list, or null when they have none (a v1 client, never pinned). */
  async listOf(userId) {
    const pin = this.device.pins[userId];
    // A "no list" learned before the user was pinned (by the trust screen) no longer holds.
    if (this.lists.has(userId) && (this.lists.get(userId) || !pin)) return this.lists.get(userId);
    let list = null;
    try {
      const r = await verifiedDevices(this.api, userId, pin);
      if (r.verdict === 'changed') {
        throw new ChatError(`${this.nameOf(userId)}’s identity key changed: nothing they signed is trusted until you accept it`);
      }
      if (r.verdict === 'first' || r.pin.version !== this.device.pins[userId]?.version) {
        this.device.pins[userId] = r.pin;
        await this.save();
      }
      list = r.list;
    } catch (e) {
      if (!isNoList(e, pin)) throw e;
    }
    this.lists.set(userId, list);
    return list;
  }

  forget(userId) {
    this.lists.delete(userId);
  }

  /** Refuse a v1 envelope whose sender device is not on its (listed) owner's signed list. */
  async checkV1Sender(senderDevice, senderKey, what) {
    // A device never changes owner: one listing serves every later check.
    if (!this.owners.has(senderDevice)) {
      const all = await this.api.get('/devices/keys?all=1');
      for (const k of all.keys) this.owners.set(k.device_id, k.user_id || this.userId);
    }
    const owner = this.owners.get(senderDevice);
    if (!owner) return;
    const list = await this.listOf(owner);
    if (!list) return;
    const listed = list.statement.devices.some((d) => d.device_id === senderDevice && d.public_key === senderKey);
    if (!listed) {
      throw new ChatError(`${what} names a sender device that is not on its user’s signed device list: the server substituted it, refused`);
    }
  }

  /** Display names from the directory: verified when a listed device of the user signed them. */
  async loadNames() {
    const key = this.device.directory_key;
    const res = await this.api.get('/users/profiles');
    const names = new Map();
    for (const p of res.profiles) {
      if (names.has(p.user_id) || !key) continue;
      let name;
      try {
        name = await c.openText(key, p.name_enc);
      } catch {
        continue;
      }
      let verified = false;
      if (p.signature) {
        try {
          const list = await this.listOf(p.user_id);
          const signer = list && list.statement.devices.find((d) => d.device_id === p.signature.device_id);
          verified = Boolean(
            signer &&
              (await c.verify(
                signer.signing_key,
                c.Context.profile,
                utf8(`${p.user_id}\n${p.signature.device_id}\n${p.name_enc}`),
                p.signature.signature,
              )),
          );
        } catch {
          verified = false;
        }
      }
      names.set(p.user_id, { name, verified });
    }
    this.names = names;
    return names;
  }

  nameOf(userId) {
    const n = this.names.get(userId);
    return n ? n.name : `user ${userId.slice(0, 8)}`;
  }

  // ---- channels ----

  /**
   * `private` or `direct` when this browser knows the channel as such: it was listed so once, or
   * a generation key is held for it; null otherwise. Sticky: a server that lists it as public
   * later would have it sealed v1 under a key of the server's own.
   */
  knownKind(channelId) {
    if (this.device.channel_kinds[channelId]) return this.device.channel_kinds[channelId];
    return priv.heldGenerations(this.device, channelId).length ? 'private' : null;
  }

  /** The kind `ch` is treated as: the known one, else as listed. Records a private kind listed. */
  kindOf(ch) {
    if (ch.kind && ch.kind !== 'public' && !this.device.channel_kinds[ch.id]) {
      this.device.channel_kinds[ch.id] = ch.kind;
      this.kindsChanged = true;
    }
    return this.knownKind(ch.id) || 'public';
  }

  async saveKinds() {
    if (!this.kindsChanged) return;
    this.kindsChanged = false;
    await this.save();
  }

  /** The channels this user may read, newest first, with decrypted names (a DM: the other person). */
  async channels() {
    const res = await this.api.get('/channels');
    const out = [];
    for (const ch of res.channels) {
      const kind = this.kindOf(ch);
      let name = null;
      let problem = null;
      let peer = null;
      try {
        if (kind === 'public') {
          const key = await this.channelKey(ch.id);
          if (key) name = await c.openText(key, ch.name_enc);
          else problem = 'waiting for its key from another member';
        } else if (ch.key_generation == null) {
          problem = 'the server lists this private channel as if it were public: refused';
        } else if (kind === 'direct') {
          const m = await priv.members(this, ch.id);
          peer = m.members.find((x) => x.user_id !== this.userId)?.user_id || this.userId;
          name = this.nameOf(peer);
          if (!ch.key_generation) problem = 'waiting for its first key';
        } else if (!ch.key_generation) {
          problem = 'waiting for its first key';
        } else {
          name = await priv.channelName(this, ch);
        }
      } catch (e) {
        problem = e.message;
      }
      out.push({
        id: ch.id,
        kind,
        name,
        problem,
        peer,
        created_at: ch.created_at,
        key_generation: ch.key_generation,
        rotation_required: ch.rotation_required,
      });
    }
    await this.saveKinds();
    return out;
  }

  /** One channel as the server lists it now (for a private send: its current generation). */
  async channel(channelId) {
    const res = await this.api.get('/channels');
    const ch = res.channels.find((x) => x.id === channelId);
    if (!ch) throw new ChatError('This channel is gone, or you are no longer a member.');
    this.kindOf(ch);
    await this.saveKinds();
    return ch;
  }

  /** The channel's v1 key: held, or fetched from this device's envelope (null: none yet). */
  async channelKey(channelId) {
    if (this.knownKind(channelId)) {
      throw new ChatError('this is a private channel: no v1 channel key is fetched or used for it, refused');
    }
    const held = this.device.channel_keys[channelId];
    if (held) return held;
    const env = await this.api.maybe(`/channels/keys?channel_id=${q(channelId)}`);
    if (!env) return null;
    if (isBound(env.envelope)) throw new ChatError('this is a private channel’s envelope');
    await this.checkV1Sender(env.sender_device_id, env.sender_public_key, 'the channel key envelope');
    const key = await c.unwrapFrom(this.device.x25519, env.sender_public_key, env.envelope);
    this.device.channel_keys[channelId] = key;
    await this.save();
    return key;
  }

  async createChannel(name) {
    const key = c.randomKey();
    const nameEnc = await c.sealText(key, name);
    const res = await this.api.post('/channels', { name_enc: nameEnc });
    this.device.channel_keys[res.channel.id] = key;
    await this.save();
    await this.shareChannelKey(res.channel.id, null);
    return res.channel;
  }

  /** A stored message (REST or a `channel.message.new` event) decrypted. */
  async open(m) {
    const base = {
      id: m.id || m.message_id,
      channel_id: m.channel_id,
      sender_id: m.sender_id || m.sender,
      sent_at: m.sent_at,
      seq: m.seq,
      client_message_id: m.client_message_id,
    };
    if (isBound(m.body)) {
      try {
        const o = await priv.openMessage(this, m, base);
        const profile = this.names.get(base.sender_id);
        const verifiedName = profile && profile.verified;
        return {
          ...base,
          text: o.text,
          name: verifiedName ? profile.name : o.claimed,
          nameVerified: Boolean(verifiedName),
          signed: o.signed,
          why: o.why,
        };
      } catch (e) {
        return { ...base, problem: `cannot open this message: ${e.message}` };
      }
    }
    if (this.knownKind(m.channel_id)) {
      return { ...base, problem: 'an unsigned (v1) text in a private channel: the server wrote it, or moved it here; refused' };
    }
    const key = await this.channelKey(m.channel_id);
    if (!key) return { ...base, problem: 'this device has no key for this channel yet' };
    try {
      const text = await c.openText(key, m.body);
      const claimed = await c.openText(key, m.sender_name_enc);
      const profile = this.names.get(base.sender_id);
      const verifiedName = profile && profile.verified;
      // Marked like a v2 text whose signer has no list: nothing ties a v1 text to its sender.
      return {
        ...base,
        text,
        name: verifiedName ? profile.name : claimed,
        nameVerified: Boolean(verifiedName),
        signed: false,
        why: V1_UNSIGNED,
      };
    } catch (e) {
      return { ...base, problem: `cannot decrypt this message: ${e.message}` };
    }
  }

  /** A page of history, oldest first: the newest page, or the one before `before`. */
  async history(channelId, before) {
    const cursor = before ? `&before=${q(before)}` : '';
    const res = await this.api.get(`/channels/messages?channel_id=${q(channelId)}&limit=${PAGE}${cursor}`);
    const out = [];
    for (const m of res.messages) out.push(await this.open(m));
    return { messages: out, more: res.messages.length === PAGE };
  }

  /** The frame that sends `text` to a channel: private by its known kind, never by a v1 key held. */
  async sealSend(channelId, text, clientMessageId) {
    const ch = await this.channel(channelId);
    if (this.kindOf(ch) !== 'public') return priv.sealSend(this, ch, text, clientMessageId);
    const key = await this.channelKey(channelId);
    if (!key) throw new ChatError('This device has no key for this channel yet; a member’s device shares it when they are online.');
    return {
      type: 'channel.message.send',
      channel_id: channelId,
      body: await c.sealText(key, text),
      sender_name_enc: await c.sealText(key, this.device.username),
      client_message_id: clientMessageId,
    };
  }

  // ---- sharing keys ----

  /** Devices that may get keys (all, or those of `userId`), as the trust screen allows. */
  /** Only the users of the devices kept are screened (`deviceIds`: e.g. a channel's members). */
  /** `owners`: the only users (a Set) whose devices may be kept, e.g. a channel's active members. */
  async allowedDevices(userId, { includeSelf = false, deviceIds = null, owners = null } = {}) {
    const all = await this.api.get('/devices/keys?all=1');
    const keys = all.keys
      .map((k) => ({ ...k, user_id: k.user_id || this.userId }))
      .filter(
        (k) =>
          (includeSelf || k.device_id !== this.device.device_id) &&
          (!userId || k.user_id === userId) &&
          (!deviceIds || deviceIds.includes(k.device_id)) &&
          (!owners || owners.has(k.user_id)),
      );
    return screen(this.api, this.device, keys, (d) => saveDevice(d));
  }

  async envelopes(key, devices) {
    const out = [];
    for (const d of devices) {
      try {
        out.push({
          device_id: d.device_id,
          sender_device_id: this.device.device_id,
          sender_public_key: this.device.public_key,
          envelope: await c.wrapFor(this.device.x25519, d.public_key, key),
        });
      } catch {
        // A device whose key does not parse gets nothing; the others still do.
      }
    }
    return out;
  }

  /** Upload envelopes; a 409 (some already hold it, or this device may not write) is not an error. */
  async upload(path, body) {
    if (body.envelopes.length === 0) return;
    try {
      await this.api.post(path, body);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 409)) throw e;
    }
  }

  /** Share a channel's v1 key with `devices` (default: every device the screen allows). */
  async shareChannelKey(channelId, userId, devices) {
    const key = this.device.channel_keys[channelId];
    // A v1 key held for a channel known private (from before kinds were kept) is never passed on.
    if (!key || this.knownKind(channelId)) return;
    const allowed = devices || (await this.allowedDevices(userId)).allowed;
    await this.upload('/channels/keys', { channel_id: channelId, envelopes: await this.envelopes(key, allowed) });
  }

  async shareDirectoryKey(userId, devices) {
    const key = this.device.directory_key;
    if (!key) return;
    const allowed = devices || (await this.allowedDevices(userId)).allowed;
    await this.upload('/directory/keys', { envelopes: await this.envelopes(key, allowed) });
  }

  /** `device.joined`: give the joining user's devices every key this device holds (v1 behaviour). */
  async shareWith(userId) {
    this.forget(userId);
    const { allowed } = await this.allowedDevices(userId);
    if (allowed.length === 0) return;
    await this.shareDirectoryKey(userId, allowed);
    for (const channelId of Object.keys(this.device.channel_keys)) {
      await this.shareChannelKey(channelId, userId, allowed);
    }
    await priv.shareGenerations(this, userId);
  }

  async presence(userIds) {
    if (userIds.length === 0) return {};
    const res = await this.api.post('/presence', { user_ids: userIds.slice(0, 1000) });
    return res.statuses || {};
  }

  async logout() {
    try {
      await this.api.post('/auth/logout');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) throw e;
    }
    this.device.token = null;
    await this.save();
  }
}
