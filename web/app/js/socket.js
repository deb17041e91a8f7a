// The live stream (SPEC §5): one WebSocket, its token in `Sec-WebSocket-Protocol` (never in the
// URL), reconnecting with capped, jittered backoff. The caller catches up with `sync` on every
// `open`, so a dropped connection loses nothing.

const SUBPROTOCOL = 'dialtone.v1';

export class Live {
  /**
   * handlers: open(), event(e), closed({ code, reason, willRetry }).
   * `check()` is called before each retry: it resolves false when the session is gone.
   */
  constructor(token, handlers, check) {
    this.token = token;
    this.handlers = handlers;
    this.check = check;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    const ws = new WebSocket(url, [SUBPROTOCOL, `bearer.${this.token}`]);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.handlers.open();
    };
    ws.onmessage = (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch {
        return;
      }
      this.handlers.event(e);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.handlers.closed({ code: ev.code, reason: ev.reason, willRetry: true });
      this.retry();
    };
  }

  async retry() {
    const delay = Math.min(30000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.timer = setTimeout(async () => {
      if (this.stopped) return;
      let alive = true;
      try {
        alive = await this.check();
      } catch {
        alive = true;
      }
      if (!alive) {
        this.handlers.closed({ code: 4401, reason: 'session ended', willRetry: false });
        return;
      }
      if (!this.stopped) this.connect();
    }, delay);
  }

  /** Send a frame; false when the socket is not open (the caller keeps the text and says so). */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get open() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'bye');
    }
  }
}
