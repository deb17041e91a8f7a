// The page: sign-in and registration, then the chat — channels with unread markers, history with
// paging, the composer, people and presence, the live stream with catch-up after a reconnect.

import { Api, ApiError, words } from './api.js';
import * as c from './crypto.js';
import { Chat } from './chat.js';
import * as priv from './private.js';
import { grouped, safetyNumber } from './safety.js';
import { Live } from './socket.js';
import { Ops } from './ops.js';
import * as store from './store.js';
import { $, el, show, status, time } from './ui.js';

/** How soon a device without some key looks for it again; doubled up to the cap while nothing
 *  arrives, so a channel that stays locked does not cost a request every few seconds forever. */
const KEY_RETRY_MS = 3000;
const KEY_RETRY_MAX_MS = 30000;

const state = {
  chat: null,
  live: null,
  channels: [],
  active: null,
  /** channel id → unread count since it was last open. */
  unread: new Map(),
  /** Messages shown in the active channel, by id; the oldest id (paging) and the newest seq. */
  shown: new Map(),
  oldest: null,
  newestSeq: 0,
  newestId: null,
  /** client_message_id → the pending list item. */
  pending: new Map(),
  people: [],
};

// ---- sign-in ----

async function deviceFor(username) {
  const existing = await store.loadDevice(username);
  if (existing) return existing;
  const x25519 = await c.newX25519();
  const signing = await c.newEd25519();
  return store.newDevice(username, x25519, signing, {
    x25519: await c.publicB64(x25519),
    signing: await c.publicB64(signing),
  });
}

function adopt(device, auth) {
  device.user_id = auth.user_id;
  device.device_id = auth.device_id;
  device.token = auth.token;
  device.is_admin = auth.is_admin;
  device.username = store.normalise(auth.username);
}

async function signIn(kind, form) {
  const username = form.username.value;
  const password = form.password.value;
  status(kind === 'register' ? 'Creating your account…' : 'Signing in…');
  const device = await deviceFor(username);
  if (kind === 'register' && device.user_id) {
    throw new Error('This browser already holds a device of that account: sign in instead.');
  }
  const api = new Api();
  let auth;
  try {
    auth =
      kind === 'register'
        ? await api.post('/auth/register', {
            username,
            password,
            public_key: device.public_key,
            invite_token: form.invite.value.trim(),
          })
        : await api.post('/auth/login', { username, password, public_key: device.public_key });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) e.signIn = true;
    if (e instanceof ApiError && e.status === 404 && kind === 'register') {
      throw new Error('That invite is not known to this server. Check it, or ask for a new one.');
    }
    if (e instanceof ApiError && e.status === 410) throw new Error(`That invite cannot be used: ${e.message}.`);
    if (e instanceof ApiError && e.status === 409) throw new Error('That username is taken.');
    throw e;
  }
  adopt(device, auth);
  await store.saveDevice(device);
  await store.setCurrent(device.username);
  form.reset();
  const persisted = await store.persist();
  await start(device, { first: kind === 'register', persisted });
}

// ---- chat ----

async function start(device, { first = false, persisted = null } = {}) {
  const chat = new Chat(device);
  state.chat = chat;
  show('signin', false);
  show('chat', true);
  show('account', true);
  $('whoami').textContent = device.username;
  $('to-ops').hidden = !device.is_admin;
  $('to-chat').hidden = true;
  show('ops', false);
  // Anyone may open a private channel; public ones are for admins (SPEC §4).
  $('new-channel-private').checked = true;
  $('new-channel-private').disabled = !device.is_admin;
  const notes = await chat.settle({ first });
  if (persisted === false) {
    notes.push('This browser did not promise to keep this site’s storage: clearing site data loses this device’s keys.');
  }
  status(notes.join(' '), notes.length ? 'warn' : '');
  await chat.loadNames().catch(() => {});
  await loadChannels();
  await loadPeople();
  // Events are handled one at a time, in arrival order: a profile update is applied before the
  // message that follows it is shown.
  let queue = Promise.resolve();
  const inOrder = (e) => {
    queue = queue.then(() => onEvent(e));
  };
  state.live = new Live(device.token, { open: onOpen, event: inOrder, closed: onClosed }, sessionAlive);
  state.live.start();
  scheduleKeyRetry(KEY_RETRY_MS);
  document.body.dataset.ready = 'chat';
}

function scheduleKeyRetry(ms) {
  clearTimeout(state.retryKeys);
  state.retryKeys = setTimeout(async () => {
    let found = false;
    try {
      found = await retryKeys();
    } catch {
      found = false;
    }
    if (state.chat && state.chat.device.token) {
      scheduleKeyRetry(found ? KEY_RETRY_MS : Math.min(ms * 2, KEY_RETRY_MAX_MS));
    }
  }, ms);
}

/** Keys arrive when a member's device shares them: look again while something is locked.
 *  True when something new opened. */
async function retryKeys() {
  const chat = state.chat;
  if (!chat || !chat.device.token) return false;
  let found = false;
  if (!chat.device.directory_key) {
    await chat.refresh();
    if (chat.device.directory_key) {
      found = true;
      await chat.loadNames();
      await loadPeople();
    }
  }
  const locked = state.channels.filter((ch) => !ch.name).length;
  if (locked > 0) {
    await loadChannels();
    found = found || state.channels.filter((ch) => !ch.name).length < locked;
  }
  return found;
}

async function sessionAlive() {
  try {
    await state.chat.api.get('/devices');
    return true;
  } catch (e) {
    return !(e instanceof ApiError && e.status === 401);
  }
}

function onOpen() {
  if ($('status').dataset.live === 'down') status('Connected again; catching up.');
  $('status').dataset.live = 'up';
  if (state.active && state.newestId) {
    state.live.send(
      state.newestSeq > 0
        ? { type: 'sync', channel_id: state.active, after_seq: state.newestSeq }
        : { type: 'sync', channel_id: state.active, after: state.newestId },
    );
  }
}

function onClosed({ code, willRetry }) {
  $('status').dataset.live = 'down';
  if (!willRetry) return sessionEnded();
  if (code === 1008) status('The connection fell behind (slow consumer). Reconnecting and catching up…', 'warn');
  else if (code === 1001) status('The server is restarting. Reconnecting…', 'warn');
  else status('Connection lost. Reconnecting…', 'warn');
}

async function sessionEnded() {
  stop();
  if (state.chat) {
    state.chat.device.token = null;
    await store.saveDevice(state.chat.device);
  }
  showSignIn();
  status('Your session has ended (it expired, or you were signed out elsewhere). Please sign in again.', 'warn');
}

function stop() {
  if (state.live) state.live.stop();
  state.live = null;
  clearTimeout(state.retryKeys);
}

async function onEvent(e) {
  const chat = state.chat;
  try {
    switch (e.type) {
      case 'channel.message.new':
        return await onMessage(e);
      case 'sync.complete':
        if (e.has_more && e.channel_id === state.active && state.newestSeq > 0) {
          state.live.send({ type: 'sync', channel_id: state.active, after_seq: state.newestSeq });
        }
        return status('');
      case 'error':
        return onError(e);
      case 'channel.updated':
      case 'channel.deleted':
        await loadChannels();
        // A channel that just appeared may be waiting for its key: look soon.
        return scheduleKeyRetry(KEY_RETRY_MS);
      case 'user.profile.updated':
        await chat.loadNames();
        return await loadPeople();
      case 'device.joined':
        await chat.shareWith(e.sender);
        return;
      case 'device_list.updated':
        chat.forget(e.sender);
        return;
      case 'presence.updated':
        return setOnline(e.sender, e.online);
      case 'member.added':
        if (e.sender === chat.userId) await loadChannels();
        return await refreshMembers(e.channel_id);
      case 'member.removed':
        if (e.sender === chat.userId) {
          if (e.channel_id === state.active) leftChannel('You are no longer a member of this channel.');
          return await loadChannels();
        }
        // Whatever the server lists next, the user it says left gets no new key from here.
        await priv.rotateIfRequired(chat, e.channel_id, e.sender);
        return await refreshMembers(e.channel_id);
      case 'key.rotated':
        return await loadChannels();
      default:
    }
  } catch (err) {
    status(words(err), 'bad');
  }
}

async function onMessage(e) {
  if (e.channel_id !== state.active) {
    state.unread.set(e.channel_id, (state.unread.get(e.channel_id) || 0) + 1);
    return renderChannels();
  }
  const m = await state.chat.open(e);
  const pending = m.client_message_id && state.pending.get(m.client_message_id);
  if (pending) {
    state.pending.delete(m.client_message_id);
    pending.replaceWith(messageItem(m));
    state.shown.set(m.id, true);
  } else {
    appendMessage(m);
  }
  track(m);
}

function onError(e) {
  const pending = e.client_message_id && state.pending.get(e.client_message_id);
  const why =
    e.code === 'rate_limited'
      ? `Sending too fast${e.retry_after ? `: wait ${e.retry_after} s` : ''}. This message was not sent.`
      : `Not sent: ${e.message || e.code}.`;
  if (pending) {
    pending.classList.add('failed');
    pending.querySelector('.meta').append(el('span', { class: 'badge' }, why));
    state.pending.delete(e.client_message_id);
  }
  status(why, 'bad');
}

function track(m) {
  if (m.seq && m.seq > state.newestSeq) state.newestSeq = m.seq;
  state.newestId = m.id;
}

async function loadChannels() {
  state.channels = await state.chat.channels();
  if (state.active && !state.channels.some((ch) => ch.id === state.active)) {
    leftChannel('That channel was deleted, or you are no longer in it.');
  }
  renderChannels();
}

function leftChannel(why) {
  state.active = null;
  $('room-title').textContent = why;
  $('room-note').textContent = '';
  $('messages').replaceChildren();
  $('composer').hidden = true;
  $('members').hidden = true;
  $('older').hidden = true;
}

const KIND_MARK = { public: '#', private: '#', direct: '@' };
const KIND_WORD = { public: 'public channel', private: 'private channel', direct: 'direct messages with' };

function renderChannels() {
  const list = $('channel-list');
  list.replaceChildren(
    ...state.channels.map((ch) => {
      const n = state.unread.get(ch.id) || 0;
      const label = ch.name ?? `(locked: ${ch.problem})`;
      return el(
        'li',
        {},
        el(
          'button',
          {
            type: 'button',
            'aria-current': ch.id === state.active ? 'true' : 'false',
            'data-channel': ch.id,
            'data-kind': ch.kind,
            onclick: guard(() => openChannel(ch.id)),
          },
          el(
            'span',
            {},
            el('span', { 'aria-hidden': 'true' }, `${KIND_MARK[ch.kind] || '#'} `),
            el('span', { class: 'visually-hidden' }, `${KIND_WORD[ch.kind] || ''} `),
            label,
            ch.kind === 'private' ? el('span', { class: 'badge', 'aria-hidden': 'true' }, 'private') : null,
          ),
          n > 0 ? el('span', { class: 'unread', 'aria-label': `${n} unread` }, String(n)) : null,
        ),
      );
    }),
  );
  if (state.channels.length === 0) {
    list.append(el('li', { class: 'note' }, 'No channels yet.'));
  }
}

async function openChannel(id) {
  if (state.channels.some((x) => x.id === id && !x.name)) await loadChannels();
  const ch = state.channels.find((x) => x.id === id);
  if (!ch) return;
  state.active = id;
  delete $('messages').dataset.channel;
  const unread = state.unread.get(id) || 0;
  state.unread.delete(id);
  state.shown = new Map();
  state.pending = new Map();
  state.newestSeq = 0;
  state.newestId = null;
  $('room-title').textContent = ch.name ?? 'Locked channel';
  $('room-note').textContent =
    ch.kind === 'public'
      ? 'Public channel: end-to-end encrypted, but its messages are not signed (dialtone v1), so any member could have written a line under another name. A ✓ marks a name from a signed profile.'
      : 'Members only, end-to-end encrypted; every message is signed by its sender’s device and checked against their signed device list. A ✓ marks a name from a signed profile.';
  $('members').hidden = ch.kind === 'public';
  if (ch.kind !== 'public') refreshMembers(id).catch((e) => status(words(e), 'bad'));
  $('messages').replaceChildren();
  renderChannels();
  const page = await state.chat.history(id);
  if (state.active !== id) return;
  const items = page.messages.map(messageItem);
  if (unread > 0 && unread <= items.length) {
    items.splice(items.length - unread, 0, el('li', { class: 'divider', role: 'separator' }, 'New messages'));
  }
  $('messages').replaceChildren(...items);
  for (const m of page.messages) {
    state.shown.set(m.id, true);
    track(m);
  }
  state.oldest = page.messages.length ? page.messages[0].id : null;
  $('older').hidden = !page.more;
  $('composer').hidden = !ch.name;
  $('messages').dataset.channel = id;
  scrollDown();
  if (ch.name) $('composer-text').focus();
}

async function loadOlder() {
  const id = state.active;
  if (!id || !state.oldest) return;
  const page = await state.chat.history(id, state.oldest);
  if (state.active !== id) return;
  const fresh = page.messages.filter((m) => !state.shown.has(m.id));
  for (const m of fresh) state.shown.set(m.id, true);
  $('messages').prepend(...fresh.map(messageItem));
  if (page.messages.length) state.oldest = page.messages[0].id;
  $('older').hidden = !page.more;
}

function appendMessage(m) {
  if (state.shown.has(m.id)) return;
  state.shown.set(m.id, true);
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(messageItem(m));
  if (atBottom) scrollDown();
}

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function messageItem(m) {
  const name = m.problem ? state.chat.nameOf(m.sender_id) : m.name;
  return el(
    'li',
    { 'data-id': m.id },
    el(
      'div',
      { class: 'meta' },
      el('span', { class: 'name' }, name || ''),
      m.nameVerified ? el('span', { class: 'badge ok', title: 'name from a signed profile' }, '✓') : null,
      m.signed === false ? el('span', { class: 'badge', title: m.why }, 'unverified') : null,
      time(m.sent_at),
    ),
    m.problem ? el('div', { class: 'problem' }, m.problem) : el('div', { class: 'text' }, m.text),
  );
}

// ---- members of a private channel ----

async function refreshMembers(channelId) {
  if (channelId !== state.active) return;
  const ch = state.channels.find((x) => x.id === channelId);
  if (!ch || ch.kind === 'public') return;
  const chat = state.chat;
  const m = await priv.members(chat, channelId);
  const active = m.members.filter((x) => !x.removed_at);
  const admin = active.some((x) => x.user_id === chat.userId && x.role === 'admin');
  const direct = ch.kind === 'direct';
  $('member-list').replaceChildren(
    ...active.map((x) =>
      el(
        'li',
        {},
        el('span', {}, `${chat.nameOf(x.user_id)}${x.role === 'admin' ? ' (admin)' : ''}`),
        admin && !direct && x.user_id !== chat.userId
          ? el(
              'button',
              {
                type: 'button',
                class: 'quiet',
                'aria-label': `Remove ${chat.nameOf(x.user_id)}`,
                onclick: guard(async () => {
                  await priv.removeMember(chat, channelId, x.user_id);
                  status(`${chat.nameOf(x.user_id)} was removed; the channel has a new key they do not have.`);
                  await loadChannels();
                  await refreshMembers(channelId);
                }),
              },
              'Remove',
            )
          : null,
      ),
    ),
  );
  const inChannel = new Set(active.map((x) => x.user_id));
  const candidates = [...chat.names.keys()].filter((id) => !inChannel.has(id));
  $('add-member-user').replaceChildren(
    ...candidates.map((id) => el('option', { value: id }, chat.nameOf(id))),
  );
  $('add-member').hidden = !admin || direct || candidates.length === 0;
  $('leave').hidden = direct;
}

async function send() {
  const box = $('composer-text');
  const text = box.value;
  if (!text.trim() || !state.active) return;
  const cmid = crypto.randomUUID();
  const frame = await state.chat.sealSend(state.active, text, cmid);
  if (!state.live || !state.live.send(frame)) {
    status('Not connected: the message was kept in the box. It sends once the connection is back.', 'warn');
    return;
  }
  box.value = '';
  const item = messageItem({
    id: `pending-${cmid}`,
    sender_id: state.chat.userId,
    name: state.chat.device.username,
    text,
    sent_at: new Date().toISOString(),
  });
  item.classList.add('pending');
  state.pending.set(cmid, item);
  $('messages').append(item);
  scrollDown();
}

// ---- people ----

async function loadPeople() {
  const ids = [...state.chat.names.keys()];
  const online = await state.chat.presence(ids).catch(() => ({}));
  state.people = ids.map((id) => ({ id, online: Boolean(online[id]) }));
  renderPeople();
}

function setOnline(userId, online) {
  const p = state.people.find((x) => x.id === userId);
  if (p) p.online = Boolean(online);
  else state.people.push({ id: userId, online: Boolean(online) });
  renderPeople();
}

function renderPeople() {
  const chat = state.chat;
  const known = new Set(state.people.map((p) => p.id));
  for (const id of chat.names.keys()) if (!known.has(id)) state.people.push({ id, online: false });
  const sorted = [...state.people].sort((a, b) => chat.nameOf(a.id).localeCompare(chat.nameOf(b.id)));
  $('people-list').replaceChildren(
    ...sorted.map((p) =>
      el(
        'li',
        {},
        el('span', { class: p.online ? 'dot on' : 'dot', 'aria-hidden': 'true' }),
        el('span', {}, chat.nameOf(p.id)),
        el('span', { class: 'visually-hidden' }, p.online ? '(online)' : '(offline)'),
        p.id === chat.userId
          ? null
          : el(
              'span',
              { class: 'actions' },
              el(
                'button',
                { type: 'button', class: 'quiet', 'aria-label': `Message ${chat.nameOf(p.id)}`, onclick: guard(() => messagePerson(p.id)) },
                'Message',
              ),
              el(
                'button',
                { type: 'button', class: 'quiet', 'aria-label': `Verify ${chat.nameOf(p.id)}`, title: 'Compare safety numbers', onclick: guard(() => showContact(p.id)) },
                'Verify',
              ),
            ),
      ),
    ),
  );
}

async function messagePerson(userId) {
  const ch = await priv.openDirect(state.chat, userId);
  await loadChannels();
  await openChannel(ch.id);
}

/** The safety number with a contact, their identity's state, and marking them verified. */
async function showContact(userId) {
  const chat = state.chat;
  const name = chat.nameOf(userId);
  state.contact = userId;
  $('contact').hidden = false;
  $('contact-title').textContent = `Safety number with ${name}`;
  $('safety-number').textContent = 'Computing…';
  delete $('safety-number').dataset.digits;
  $('mark-verified').hidden = true;
  const { mine, theirs } = await priv.identities(chat, userId);
  if (!mine || !theirs) {
    $('contact-state').textContent = `${mine ? name + ' has' : 'You have'} no signed device list yet, so there is no safety number to compare.`;
    $('safety-number').textContent = '';
    return;
  }
  const pinned = chat.device.pins[userId];
  let state_ = 'Not verified yet.';
  if (theirs.verdict === 'changed') {
    state_ = pinned && pinned.verified
      ? `Warning: ${name}’s identity key changed since you verified it. They reset it, or the server is lying. Nothing is shared with them until you compare the new numbers and mark them verified again.`
      : `Warning: ${name}’s identity key changed. They reset it, or the server is lying. Compare the numbers before trusting it.`;
  } else if (pinned && pinned.verified) {
    state_ = `${name} is verified.`;
  }
  $('contact-state').textContent = state_;
  $('contact-state').className = theirs.verdict === 'changed' ? 'warn-text' : '';
  const digits = await safetyNumber(
    mine.statement.identity_key,
    chat.userId,
    theirs.list.statement.identity_key,
    userId,
  );
  if (state.contact !== userId) return;
  $('safety-number').textContent = grouped(digits);
  $('safety-number').dataset.digits = digits;
  $('mark-verified').hidden = Boolean(pinned && pinned.verified && theirs.verdict !== 'changed');
  state.contactPin = theirs.pin;
}

async function markVerified() {
  const chat = state.chat;
  const userId = state.contact;
  if (!userId || !state.contactPin) return;
  chat.device.pins[userId] = { ...state.contactPin, verified: true };
  chat.forget(userId);
  await chat.save();
  await showContact(userId);
}

// ---- ops pages ----

async function openOps() {
  closeOps();
  state.ops = new Ops(state.chat.api, {
    onError: (e) => status(words(e), 'bad'),
    onStatus: (text) => status(text),
  });
  show('chat', false);
  show('ops', true);
  $('to-ops').hidden = true;
  $('to-chat').hidden = false;
  await state.ops.open();
  document.body.dataset.view = 'ops';
}

function closeOps() {
  if (state.ops) state.ops.close();
  state.ops = null;
  delete document.body.dataset.view;
}

function backToChat() {
  closeOps();
  show('ops', false);
  show('chat', true);
  $('to-ops').hidden = !(state.chat && state.chat.device.is_admin);
  $('to-chat').hidden = true;
}

// ---- wiring ----

function showSignIn() {
  document.body.dataset.ready = 'signin';
  closeOps();
  show('chat', false);
  show('account', false);
  show('signin', true);
}

function guard(fn) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    try {
      await fn(ev);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && state.chat && !e.signIn) return sessionEnded();
      status(words(e), 'bad');
    }
  };
}

async function boot() {
  $('login-form').addEventListener('submit', guard((ev) => signIn('login', ev.target)));
  $('register-form').addEventListener('submit', guard((ev) => signIn('register', ev.target)));
  $('composer').addEventListener('submit', guard(send));
  $('composer-text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) guard(send)(ev);
  });
  $('older').addEventListener('click', guard(loadOlder));
  $('mark-verified').addEventListener('click', guard(markVerified));
  $('to-ops').addEventListener('click', guard(openOps));
  $('to-chat').addEventListener('click', backToChat);
  $('mint-invite').addEventListener(
    'submit',
    guard(async () => {
      const uses = Number($('invite-uses').value);
      const hours = Number($('invite-hours').value);
      await state.ops.mint(uses, hours);
      status(`Invite minted: ${uses} use(s), expires in ${hours} h.`);
    }),
  );
  $('close-contact').addEventListener('click', () => {
    $('contact').hidden = true;
    state.contact = null;
  });
  $('add-member').addEventListener(
    'submit',
    guard(async () => {
      const userId = $('add-member-user').value;
      if (!userId || !state.active) return;
      await priv.addMember(state.chat, state.active, userId);
      status(`${state.chat.nameOf(userId)} was added and given the current key.`);
      await refreshMembers(state.active);
    }),
  );
  $('leave').addEventListener(
    'click',
    guard(async () => {
      if (!state.active) return;
      await priv.removeMember(state.chat, state.active, state.chat.userId);
      await loadChannels();
    }),
  );
  $('new-channel').addEventListener(
    'submit',
    guard(async () => {
      const name = $('new-channel-name').value.trim();
      if (!name) return;
      const ch = $('new-channel-private').checked
        ? await priv.createPrivate(state.chat, name)
        : await state.chat.createChannel(name);
      $('new-channel-name').value = '';
      await loadChannels();
      await openChannel(ch.id);
    }),
  );
  $('logout').addEventListener(
    'click',
    guard(async () => {
      stop();
      await state.chat.logout();
      state.chat = null;
      showSignIn();
      status('Signed out. This device keeps its keys for your next sign-in.');
    }),
  );
  const username = await store.current();
  const device = username && (await store.loadDevice(username));
  if (device && device.token) {
    try {
      await start(device);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return sessionEnded();
      status(words(e), 'bad');
    }
  } else {
    showSignIn();
    if (device) $('login-username').value = device.username;
  }
}

boot().catch((e) => status(words(e), 'bad'));
