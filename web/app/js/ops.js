// The ops pages, for admins: invites (mint with uses and expiry, list, revoke), users (list with
// their usernames, disable and enable, promote and demote) and live server stats drawn as small
// charts, all from the admin REST endpoints (README "Admin REST").

import { q } from './api.js';
import { $, el, time } from './ui.js';

const SAMPLES = 60;
const REFRESH_MS = 2000;

const SERIES = [
  ['connections', 'WebSocket connections', (s) => s.connections],
  ['users_online', 'Users online', (s) => s.users_online],
  ['messages_per_second', 'Messages per second', (s) => s.messages_per_second],
  ['mailbox_depth', 'Mailbox depth (all actors)', (s) => Object.values(s.mailboxes || {}).reduce((n, m) => n + m.depth, 0)],
  ['slow_consumer_closes', 'Slow-consumer closes', (s) => s.slow_consumer_closes],
  ['messages_persisted', 'Messages persisted', (s) => s.messages_persisted],
];

export class Ops {
  constructor(api, { onError, onStatus }) {
    this.api = api;
    this.onError = onError;
    this.onStatus = onStatus;
    this.history = new Map(SERIES.map(([k]) => [k, []]));
    this.timer = null;
  }

  async open() {
    await Promise.all([this.loadInvites(), this.loadUsers(), this.tick()]);
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick().catch(this.onError), REFRESH_MS);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // ---- stats ----

  async tick() {
    const s = await this.api.get('/admin/stats');
    for (const [key, , read] of SERIES) {
      const h = this.history.get(key);
      h.push(Number(read(s)) || 0);
      if (h.length > SAMPLES) h.shift();
    }
    this.renderStats(s);
  }

  renderStats(s) {
    $('stats').replaceChildren(
      ...SERIES.map(([key, label]) => {
        const h = this.history.get(key);
        const now = h[h.length - 1];
        return el(
          'figure',
          { class: 'stat', 'data-stat': key },
          el('figcaption', {}, label),
          el('div', { class: 'value' }, key === 'messages_per_second' ? now.toFixed(1) : String(now)),
          sparkline(h, `${label}, last ${h.length} samples`),
        );
      }),
      el('p', { class: 'note' }, `Up ${Math.round(s.uptime_seconds / 60)} min; ${s.channels} channels.`),
    );
  }

  // ---- invites ----

  async mint(uses, hours) {
    const res = await this.api.post('/server/invites', {
      max_uses: uses,
      expires_in_seconds: hours * 3600,
    });
    await this.loadInvites();
    $('minted-token').textContent = res.token;
    $('minted').hidden = false;
    return res;
  }

  async loadInvites() {
    const res = await this.api.get('/admin/invites');
    const rows = res.invites.map((inv) => {
      const expired = new Date(inv.expires_at) < new Date();
      const state = inv.revoked ? 'revoked' : expired ? 'expired' : inv.uses >= inv.max_uses ? 'used up' : 'open';
      return el(
        'tr',
        { 'data-invite': inv.id },
        el('td', {}, time(inv.created_at)),
        el('td', {}, time(inv.expires_at)),
        el('td', {}, `${inv.uses} of ${inv.max_uses}`),
        el('td', { class: 'state' }, state),
        el(
          'td',
          {},
          state === 'open'
            ? el('button', { type: 'button', class: 'quiet', onclick: () => this.revoke(inv.id).catch(this.onError) }, 'Revoke')
            : null,
        ),
      );
    });
    $('invite-table').tBodies[0].replaceChildren(...rows);
  }

  async revoke(id) {
    await this.api.call('DELETE', `/admin/invites/${q(id)}`);
    await this.loadInvites();
    this.onStatus('Invite revoked: it can no longer be used.');
  }

  // ---- users ----

  async loadUsers() {
    const res = await this.api.get('/admin/users');
    const rows = res.users.map((u) => {
      const action = (name, label) =>
        el(
          'button',
          {
            type: 'button',
            class: 'quiet',
            'data-action': name,
            'aria-label': `${label} ${u.username}`,
            onclick: () => this.act(u, name).catch(this.onError),
          },
          label,
        );
      return el(
        'tr',
        { 'data-user': u.username },
        el('td', {}, u.username),
        el('td', { class: 'role' }, u.is_admin ? 'admin' : 'member'),
        el('td', { class: 'state' }, u.disabled_at ? 'disabled' : 'active'),
        el('td', {}, time(u.created_at)),
        el(
          'td',
          {},
          u.disabled_at ? action('enable', 'Enable') : action('disable', 'Disable'),
          u.is_admin ? action('demote', 'Demote') : action('promote', 'Promote'),
        ),
      );
    });
    $('user-table').tBodies[0].replaceChildren(...rows);
  }

  async act(user, action) {
    await this.api.post(`/admin/users/${q(user.id)}/${action}`);
    const said = {
      disable: `${user.username} is disabled: their sessions ended and their sockets were closed.`,
      enable: `${user.username} can sign in again.`,
      promote: `${user.username} is now an admin.`,
      demote: `${user.username} is no longer an admin.`,
    };
    await this.loadUsers();
    this.onStatus(said[action]);
  }
}

/** A small line chart of `values` (SVG drawn with DOM calls: nothing inline for the CSP). */
function sparkline(values, label) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${SAMPLES} 20`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${i + SAMPLES - values.length},${(20 - (v / max) * 18 - 1).toFixed(2)}`);
  const line = document.createElementNS(NS, 'polyline');
  line.setAttribute('points', points.join(' '));
  svg.append(line);
  return svg;
}
