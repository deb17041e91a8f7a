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
const consoleErrors = [];

async function page(ctx) {
  const p = contexts.get(ctx);
  if (!p) throw new Error(`no context ${ctx}: run newContext first`);
  return p;
}

const ops = {
  async newContext({ ctx, width = 1100, height = 760 }) {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width, height },
    });
    const p = await context.newPage();
    p.on('console', (m) => {
      // A 409 is protocol, not a fault: sharing a key with a device that already holds it.
      if (m.type() === 'error' && !m.text().includes('status of 409')) consoleErrors.push(`${ctx}: ${m.text()}`);
    });
    p.on('pageerror', (e) => consoleErrors.push(`${ctx}: ${e.message}`));
    await p.goto(`${BASE}/app/`);
    await p.waitForSelector('body[data-ready]', { timeout: WAIT });
    contexts.set(ctx, p);
    return {};
  },

  async register({ ctx, username, password, invite }) {
    const p = await page(ctx);
    await p.fill('#register-invite', invite);
    await p.fill('#register-username', username);
    await p.fill('#register-password', password);
    await p.click('#register-form button[type=submit]');
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
    const button = p.locator('#channel-list button', { hasText: name });
    await button.first().waitFor({ timeout: WAIT });
    await button.first().click();
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

  async createChannel({ ctx, name }) {
    const p = await page(ctx);
    await p.fill('#new-channel-name', name);
    await p.click('#new-channel button[type=submit]');
    await p.locator('#room-title', { hasText: name }).waitFor({ timeout: WAIT });
    return {};
  },

  /** Type and send with the Enter key; waits for the server's echo (the pending mark goes). */
  async send({ ctx, text }) {
    const p = await page(ctx);
    await p.fill('#composer-text', text);
    await p.press('#composer-text', 'Enter');
    await p.locator('#messages li:not(.pending) .text', { hasText: text }).first().waitFor({ timeout: WAIT });
    return {};
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
        text: li.querySelector('.text')?.textContent ?? null,
        problem: li.querySelector('.problem')?.textContent ?? null,
      })),
    );
    return { messages: items };
  },

  async unread({ ctx, name }) {
    const p = await page(ctx);
    const b = p.locator('#channel-list button', { hasText: name }).first();
    const badge = b.locator('.unread');
    return { unread: (await badge.count()) ? Number(await badge.textContent()) : 0 };
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

  async consoleErrors() {
    return { errors: consoleErrors.splice(0) };
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
