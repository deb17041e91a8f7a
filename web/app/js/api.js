// The REST API (SPEC §4, docs/openapi.json) on this page's own origin, and errors in words a
// person understands.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** What went wrong, said for a person, not a program. */
export function words(err) {
  if (!(err instanceof ApiError)) {
    return err && err.message ? err.message : String(err);
  }
  if (err.status === 0) return 'Cannot reach the server. Check your connection; the page retries by itself.';
  if (err.code === 'rate_limited' || err.status === 429) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : ' Wait a moment and try again.';
    return `Too many requests.${wait}`;
  }
  if (err.status === 401) {
    return err.code === 'unauthorized' && err.signIn
      ? 'Wrong username or password.'
      : 'Your session has ended (it expired, or you were signed out elsewhere). Please sign in again.';
  }
  if (err.status === 503) return 'The server is busy or its database is unavailable. Try again shortly.';
  if (err.status >= 500) return 'The server had a problem. Try again.';
  return err.message;
}

export class Api {
  constructor(token = null) {
    this.token = token;
  }

  async call(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'network', 'network error');
    }
    if (res.status === 204) return null;
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const retry = Number(res.headers.get('Retry-After')) || undefined;
      const err = new ApiError(
        res.status,
        (data && data.code) || `http_${res.status}`,
        (data && data.error) || res.statusText,
        retry,
      );
      err.body = data;
      throw err;
    }
    return data;
  }

  get(path) {
    return this.call('GET', path);
  }

  post(path, body) {
    return this.call('POST', path, body);
  }

  /** A GET whose 404 means "none": returns null. */
  async maybe(path) {
    try {
      return await this.get(path);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }
}

export const q = encodeURIComponent;
