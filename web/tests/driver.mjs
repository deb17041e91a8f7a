// Drives the dialtone web client in headless Chromium for the Rust integration suite
// (tests/integration/browser). It reads one JSON command per line on stdin and answers each with
// one JSON line on stdout: {"ok": true, ...} or {"ok": false, "error": "..."}.
//
//   node driver.mjs            env: DIALTONE_URL (https://127.0.0.1:PORT), CHROMIUM (executable),
//                              ARTIFACTS (directory for screenshots)
//
// Each browser context is one person's browser (its own IndexedDB); commands name it by `ctx`.

import { createInterface } from 'node:readline';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.DIALTONE_URL;
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const WAIT = 15000;
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--ignore-certificate-errors', '--no-sandbox'],
});
const contexts = new Map();

/** Whether `url` is a request for `path` whose query holds every pair of `where`. */
function matches(path, where) {
  return (url) => url.pathname === path && Object.entries(where).every(([k, v]) => url.searchParams.get(k) === v);
}

/** Answers that are protocol, not faults: a key this device has no envelope for (404), an
 *  envelope some device already holds (409). */
function expected(status, method, path) {
  return status === 409 || (status === 404 && method === 'GET' && path === '/channels/keys');
}
const consoleErrors = [];

async function page(ctx) {
  const p = contexts.get(ctx);
  if (!p) throw new Error(`no context ${ctx}: run newContext first`);
  return p;
}

/** Fill in and submit the page's registration form. */
async function submitRegistration(ctx, username, password, invite) {
  const p = await page(ctx);
  await p.fill('#register-invite', invite);
  await p.fill('#register-username', username);
  await p.fill('#register-password', password);
  await p.click('#register-form button[type=submit]');
  return p;
}

/** Wait until the status line says `done` (or shows an error, which fails the command). */
async function settled(p, done) {
  await p.waitForFunction(
    (text) => {
      const s = document.getElementById('status');
      return s.textContent.includes(text) || s.classList.contains('bad');
    },
    done,
    { timeout: WAIT },
  );
  const status = await p.textContent('#status');
  if (!status.includes(done)) throw new Error(`the page says: ${status}`);
  return { status };
}

const ops = {
  async newContext({ ctx, width = 1100, height = 760 }) {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width, height },
    });
    const p = await context.newPage();
    p.on('console', (m) => {
      // HTTP failures are judged below, with their URL.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(`${ctx}: ${m.text()}`);
    });
    p.on('pageerror', (e) => consoleErrors.push(`${ctx}: ${e.message}`));
    p.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      if (r.status() >= 400 && !expected(r.status(), r.request().method(), path)) {
        consoleErrors.push(`${ctx}: HTTP ${r.status()} ${r.request().method()} ${path}`);
      }
    });
    await p.goto(`${BASE}/app/`);
    await p.waitForSelector('body[data-ready]', { timeout: WAIT });
    contexts.set(ctx, p);
    return {};
  },

  async register({ ctx, username, password, invite }) {
    const p = await submitRegistration(ctx, username, password, invite);
    await p.waitForSelector('body[data-ready=chat]', { timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  async login({ ctx, username, password }) {
    const p = await page(ctx);
    await p.fill('#login-username', username);
    await p.fill('#login-password', password);
    await p.click('#login-form button[type=submit]');
    await p.waitForSelector('body[data-ready=chat]', { timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  /** A registration the server refuses: what the page says. */
  async registerFails({ ctx, username, password, invite }) {
    const p = await submitRegistration(ctx, username, password, invite);
    await p.waitForSelector('#status.bad', { timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  /** The page noticed its session ended (signed out elsewhere, disabled): what it says. */
  async waitSignedOut({ ctx }) {
    const p = await page(ctx);
    await p.waitForSelector('body[data-ready=signin]', { timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  /** Open the admin pages (again: back to chat first, so the lists are read afresh). */
  async openOps({ ctx }) {
    const p = await page(ctx);
    if ((await p.getAttribute('body', 'data-view')) === 'ops') await p.click('#to-chat');
    await p.click('#to-ops');
    await p.waitForSelector('body[data-view=ops]', { timeout: WAIT });
    return {};
  },

  async mintInvite({ ctx, uses, hours }) {
    const p = await page(ctx);
    await p.fill('#invite-uses', String(uses));
    await p.fill('#invite-hours', String(hours));
    await p.evaluate(() => {
      document.getElementById('minted-token').textContent = '';
    });
    await p.click('#mint-invite button[type=submit]');
    await p.waitForFunction(() => document.getElementById('minted-token').textContent.length > 0, null, { timeout: WAIT });
    return { token: await p.textContent('#minted-token') };
  },

  async invites({ ctx }) {
    const p = await page(ctx);
    const rows = await p.locator('#invite-table tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({
        id: tr.dataset.invite,
        cells: [...tr.querySelectorAll('td')].map((td) => td.textContent),
      })),
    );
    return { invites: rows };
  },

  async revokeInvite({ ctx, id }) {
    const p = await page(ctx);
    await p.locator(`#invite-table tr[data-invite="${id}"] button`).click();
    await p.locator(`#invite-table tr[data-invite="${id}"] .state`, { hasText: 'revoked' }).waitFor({ timeout: WAIT });
    return {};
  },

  async users({ ctx }) {
    const p = await page(ctx);
    const rows = await p.locator('#user-table tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({
        username: tr.dataset.user,
        role: tr.querySelector('.role').textContent,
        state: tr.querySelector('.state').textContent,
      })),
    );
    return { users: rows };
  },

  async userAction({ ctx, username, action }) {
    const p = await page(ctx);
    await p.locator(`#user-table tr[data-user="${username}"] button[data-action="${action}"]`).click();
    const want = { disable: 'is disabled', enable: 'can sign in again', promote: 'is now an admin', demote: 'is no longer an admin' };
    return settled(p, `${username} ${want[action]}`);
  },

  /** The live numbers; with `connections`, wait (the page refreshes itself) until it shows that. */
  async stats({ ctx, connections }) {
    const p = await page(ctx);
    await p.waitForSelector('#stats [data-stat=connections] polyline', { state: 'attached', timeout: WAIT });
    if (connections !== undefined) {
      await p.waitForFunction(
        (n) => document.querySelector('#stats [data-stat=connections] .value')?.textContent === n,
        String(connections),
        { timeout: WAIT },
      );
    }
    const values = await p.locator('#stats [data-stat]').evaluateAll((figs) =>
      Object.fromEntries(figs.map((f) => [f.dataset.stat, f.querySelector('.value').textContent])),
    );
    return { values };
  },

  async logout({ ctx }) {
    const p = await page(ctx);
    await p.click('#logout');
    await p.waitForSelector('body[data-ready=signin]', { timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  async reload({ ctx }) {
    const p = await page(ctx);
    await p.reload();
    await p.waitForSelector('body[data-ready]', { timeout: WAIT });
    return { signedIn: (await p.getAttribute('body', 'data-ready')) === 'chat' };
  },

  /** Wait until the channel list shows `name` (decrypted), then open it. */
  async openChannel({ ctx, name }) {
    const p = await page(ctx);
    const button = p.locator('#channel-list button', { hasText: name }).first();
    await button.waitFor({ timeout: WAIT });
    const id = await button.getAttribute('data-channel');
    await button.click();
    await p.waitForSelector(`#messages[data-channel="${id}"]`, { timeout: WAIT });
    await p.waitForSelector('#composer:not([hidden])', { timeout: WAIT });
    return { title: await p.textContent('#room-title') };
  },

  /** Wait until the people list shows `name` (a published, decrypted profile). */
  async waitPerson({ ctx, name }) {
    const p = await page(ctx);
    await p.locator('#people-list li', { hasText: name }).first().waitFor({ timeout: WAIT });
    return {};
  },

  async channels({ ctx }) {
    const p = await page(ctx);
    return { channels: await p.locator('#channel-list li').allTextContents() };
  },

  /** Make a channel on the page, which opens it: its id. */
  async createChannel({ ctx, name, private: priv = true }) {
    const p = await page(ctx);
    if (!(await p.isDisabled('#new-channel-private'))) await p.setChecked('#new-channel-private', priv);
    await p.fill('#new-channel-name', name);
    await p.click('#new-channel button[type=submit]');
    await p.locator('#room-title', { hasText: name }).waitFor({ timeout: WAIT });
    // Opening a channel drops the attribute before the title changes and sets it when done.
    await p.waitForSelector('#messages[data-channel]', { timeout: WAIT });
    return { id: await p.getAttribute('#messages', 'data-channel') };
  },

  /** Wait until an entry of the channel list shows `text` (e.g. why a channel stays locked). */
  async waitChannel({ ctx, text }) {
    const p = await page(ctx);
    const item = p.locator('#channel-list li', { hasText: text }).first();
    await item.waitFor({ timeout: WAIT });
    return { text: await item.textContent() };
  },

  /** In the open private channel's members panel: add `name`. */
  async addMember({ ctx, name }) {
    const p = await page(ctx);
    await p.$eval('#members', (d) => {
      d.open = true;
    });
    await p.locator('#add-member-user option', { hasText: name }).first().waitFor({ state: 'attached', timeout: WAIT });
    await p.selectOption('#add-member-user', { label: name });
    await p.click('#add-member button[type=submit]');
    return settled(p, `${name} was added`);
  },

  async removeMember({ ctx, name }) {
    const p = await page(ctx);
    await p.locator('#member-list li', { hasText: name }).locator('button').click();
    return settled(p, `${name} was removed`);
  },

  /** Wait until the channel list no longer shows `name`. */
  async channelGone({ ctx, name, timeout = WAIT }) {
    const p = await page(ctx);
    await p.locator('#channel-list button', { hasText: name }).waitFor({ state: 'detached', timeout });
    return {};
  },

  async messagePerson({ ctx, name }) {
    const p = await page(ctx);
    await p.evaluate(() => delete document.getElementById('messages').dataset.channel);
    await p.locator('#people-list li', { hasText: name }).getByRole('button', { name: /^Message/ }).click();
    await p.waitForSelector('#messages[data-channel]', { timeout: WAIT });
    await p.locator('#room-title', { hasText: name }).waitFor({ timeout: WAIT });
    await p.waitForSelector('#composer:not([hidden])', { timeout: WAIT });
    return { title: await p.textContent('#room-title') };
  },

  /** The safety number the page shows for `name` (digits only), and what it says. */
  async safetyNumber({ ctx, name }) {
    const p = await page(ctx);
    await p.locator('#people-list li', { hasText: name }).getByRole('button', { name: /^Verify/ }).click();
    await p.waitForSelector('#safety-number[data-digits]', { timeout: WAIT });
    return {
      digits: await p.getAttribute('#safety-number', 'data-digits'),
      shown: await p.textContent('#safety-number'),
      state: await p.textContent('#contact-state'),
    };
  },

  async markVerified({ ctx }) {
    const p = await page(ctx);
    await p.click('#mark-verified');
    await p.locator('#contact-state', { hasText: 'is verified' }).waitFor({ timeout: WAIT });
    return { state: await p.textContent('#contact-state') };
  },

  /** Type and send with the Enter key; waits for the server's echo (the pending mark goes). */
  async send({ ctx, text }) {
    const p = await page(ctx);
    await p.fill('#composer-text', text);
    await p.press('#composer-text', 'Enter');
    await p.locator('#messages li:not(.pending) .text', { hasText: text }).first().waitFor({ timeout: WAIT });
    return {};
  },

  /** A send the server refuses: what the page says, and whether the message is marked failed. */
  async sendRefused({ ctx, text }) {
    const p = await page(ctx);
    await p.fill('#composer-text', text);
    await p.press('#composer-text', 'Enter');
    await p.waitForSelector('#status.bad', { timeout: WAIT });
    return {
      status: await p.textContent('#status'),
      failed: await p.locator('#messages li.failed .text', { hasText: text }).count(),
    };
  },

  async waitMessage({ ctx, text, timeout = WAIT }) {
    const p = await page(ctx);
    await p.locator('#messages li .text', { hasText: text }).first().waitFor({ timeout });
    return {};
  },

  /** Whether `text` shows up within `timeout` ms (false is an answer, not an error). */
  async seesWithin({ ctx, text, timeout }) {
    const p = await page(ctx);
    try {
      await p.locator('#messages li .text', { hasText: text }).first().waitFor({ timeout });
      return { seen: true };
    } catch {
      return { seen: false };
    }
  },

  async messages({ ctx }) {
    const p = await page(ctx);
    const items = await p.locator('#messages li[data-id]').evaluateAll((lis) =>
      lis.map((li) => ({
        name: li.querySelector('.name')?.textContent || '',
        verified: Boolean(li.querySelector('.badge.ok')),
        unverified: [...li.querySelectorAll('.badge')].some((b) => b.textContent === 'unverified'),
        text: li.querySelector('.text')?.textContent ?? null,
        problem: li.querySelector('.problem')?.textContent ?? null,
      })),
    );
    return { messages: items };
  },

  /** Click "Load older messages"; how many messages show before and after. */
  async loadOlder({ ctx }) {
    const p = await page(ctx);
    const before = await p.locator('#messages li[data-id]').count();
    await p.click('#older');
    await p.waitForFunction((n) => document.querySelectorAll('#messages li[data-id]').length > n, before, {
      timeout: WAIT,
    });
    return {
      before,
      after: await p.locator('#messages li[data-id]').count(),
      more: await p.isVisible('#older'),
    };
  },

  async count({ ctx }) {
    const p = await page(ctx);
    return {
      messages: await p.locator('#messages li[data-id]').count(),
      dividers: await p.locator('#messages li.divider').count(),
      more: await p.isVisible('#older'),
    };
  },

  /** Wait until the channel `name` shows `n` unread. */
  async waitUnread({ ctx, name, n }) {
    const p = await page(ctx);
    await p
      .locator('#channel-list button', { hasText: name })
      .first()
      .locator('.unread', { hasText: String(n) })
      .waitFor({ timeout: WAIT });
    return {};
  },

  async unread({ ctx, name }) {
    const p = await page(ctx);
    const b = p.locator('#channel-list button', { hasText: name }).first();
    const badge = b.locator('.unread');
    return { unread: (await badge.count()) ? Number(await badge.textContent()) : 0 };
  },

  async waitStatus({ ctx, text }) {
    const p = await page(ctx);
    await p.locator('#status', { hasText: text }).waitFor({ timeout: WAIT });
    return { status: await p.textContent('#status') };
  },

  async status({ ctx }) {
    const p = await page(ctx);
    return { status: await p.textContent('#status') };
  },

  /** The device keys in IndexedDB are CryptoKeys that cannot be exported. */
  async keysCheck({ ctx }) {
    const p = await page(ctx);
    return p.evaluate(async () => {
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open('dialtone');
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      const all = await new Promise((res, rej) => {
        const r = db.transaction('devices').objectStore('devices').getAll();
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      const out = [];
      for (const d of all) {
        const keys = { x25519: d.x25519.privateKey, signing: d.signing.privateKey };
        if (d.identity) keys.identity = d.identity.privateKey;
        for (const [name, key] of Object.entries(keys)) {
          let exported = true;
          try {
            await crypto.subtle.exportKey('pkcs8', key);
          } catch {
            exported = false;
          }
          out.push({ device: d.device_id, name, type: key.type, extractable: key.extractable, exported });
        }
      }
      return { keys: out };
    });
  },

  /** What the page's current device holds, by name only (never a key's value): its ids, the
   *  channels it has a v1 key for, its generation slots (`channel/generation`), the kinds it
   *  recorded and the users it pinned. */
  async keyState({ ctx }) {
    const p = await page(ctx);
    return p.evaluate(async () => {
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open('dialtone');
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      const get = (store, key) =>
        new Promise((res, rej) => {
          const r = db.transaction(store).objectStore(store).get(key);
          r.onsuccess = () => res(r.result);
          r.onerror = () => rej(r.error);
        });
      const d = await get('devices', await get('meta', 'current'));
      return {
        userId: d.user_id,
        deviceId: d.device_id,
        publicKey: d.public_key,
        channelKeys: Object.keys(d.channel_keys),
        generations: Object.keys(d.generation_keys),
        kinds: d.channel_kinds || {},
        pins: Object.keys(d.pins),
      };
    });
  },

  /** The hostile server, in the page's network: from now on the page's requests for `path`
   *  whose query holds every pair of `where` get `status` and the JSON `body` instead. */
  async serve({ ctx, path, where = {}, status = 200, body = {} }) {
    const p = await page(ctx);
    await p.route(matches(path, where), (route) =>
      route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) }),
    );
    return {};
  },

  /** As `serve`, answering with the server's own answer to the same request with the query
   *  pairs of `swap` put in (e.g. another channel's envelope for this one). */
  async serveFrom({ ctx, path, where = {}, swap }) {
    const p = await page(ctx);
    await p.route(matches(path, where), async (route) => {
      const url = new URL(route.request().url());
      for (const [k, v] of Object.entries(swap)) url.searchParams.set(k, v);
      await route.fulfill({ response: await route.fetch({ url: url.toString() }) });
    });
    return {};
  },

  async screenshot({ ctx, name }) {
    const p = await page(ctx);
    const path = join(ARTIFACTS, `${name}.png`);
    await p.screenshot({ path, fullPage: true });
    return { path };
  },

  /** axe-core on the current page: violations of impact serious or critical. */
  async axe({ ctx }) {
    const p = await page(ctx);
    // Evaluated over the DevTools protocol: the page's CSP (rightly) refuses inline scripts.
    await p.evaluate(AXE);
    const result = await p.evaluate(async () => {
      const r = await globalThis.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
    });
    return { violations: result.filter((v) => v.impact === 'serious' || v.impact === 'critical'), all: result };
  },

  /** Page errors and failed requests since the last call, minus those the test provoked
   *  (`expect`: substrings). */
  async consoleErrors({ expect = [] }) {
    const errors = consoleErrors.splice(0).filter((e) => !expect.some((x) => e.includes(x)));
    return { errors };
  },

  async close() {
    await browser.close();
    setTimeout(() => process.exit(0), 10);
    return {};
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: `bad command: ${e.message}` })}\n`);
    continue;
  }
  const fn = ops[cmd.op];
  try {
    if (!fn) throw new Error(`unknown op ${cmd.op}`);
    const out = await fn(cmd);
    process.stdout.write(`${JSON.stringify({ ok: true, ...out })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) })}\n`);
  }
}
await browser.close();
