// The one module that talks to the server (docs/annotation-api.md). Everything else gets data
// from here; the viewer never fetches. Errors come back as ApiError with a stable `kind`:
//   'network'  — no answer (offline, server down): retry later;
//   'lease'    — the lease expired and the item went to someone else (409 lease_lost);
//   'auth'     — logged out (401/403);
//   'invalid'  — the server refused the input (400), with its message;
//   'server'   — 5xx.

export class ApiError extends Error {
  constructor(kind, message, { status = 0, code = '', details = null } = {}) {
    super(message);
    this.kind = kind; this.status = status; this.code = code; this.details = details;
  }
  get retryable() { return this.kind === 'network' || this.kind === 'server'; }
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (m) return decodeURIComponent(m[1]);
  return document.querySelector('meta[name="csrf-token"]')?.content ?? '';
}

export class Api {
  constructor({ base = '/api/v1/', fetchImpl = (...a) => fetch(...a) } = {}) {
    this.base = base;
    this.fetch = fetchImpl;
    this.bytesReceived = 0; // body bytes of GLBs and images, for the bench
  }

  url(path) { return path.startsWith('/') ? path : this.base + path; }

  async request(method, path, body, { keepalive = false, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') { headers['X-CSRFToken'] = csrfToken(); }
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await this.fetch(this.url(path), {
        method, headers, credentials: 'same-origin', keepalive, signal,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err?.name === 'AbortError') throw err;
      throw new ApiError('network', 'The server cannot be reached. Check the connection; nothing is lost.');
    }
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (res.ok) return data;
    const e = data?.error ?? {};
    const message = e.message || `${method} ${path} failed with HTTP ${res.status}.`;
    let kind = 'invalid';
    if (res.status >= 500) kind = 'server';
    else if (res.status === 401 || res.status === 403) kind = 'auth';
    else if (res.status === 409 && (e.code === 'lease_lost' || e.code === 'lease_expired' || /lease/.test(e.code ?? ''))) kind = 'lease';
    else if (res.status === 409) kind = 'conflict';
    throw new ApiError(kind, message, { status: res.status, code: e.code ?? '', details: e.details ?? null });
  }

  async bytes(path, { signal } = {}) {
    let res;
    try {
      res = await this.fetch(this.url(path), { credentials: 'same-origin', signal });
    } catch (err) {
      if (err?.name === 'AbortError') throw err;
      throw new ApiError('network', `Could not download ${path}.`);
    }
    if (!res.ok) throw new ApiError(res.status >= 500 ? 'server' : 'invalid', `Download of ${path} failed (HTTP ${res.status}).`, { status: res.status });
    const buf = await res.arrayBuffer();
    this.bytesReceived += buf.byteLength;
    return buf;
  }

  async imageBitmap(path, opts) {
    const buf = await this.bytes(path, opts);
    return createImageBitmap(new Blob([buf]));
  }

  // --- the annotation contract ---
  /** Next item under a lease, or null when none is left. `exclude`: item ids already held. */
  nextItem(slug, { exclude = [] } = {}) {
    return this.request('POST', `projects/${slug}/next-item`, exclude.length ? { exclude } : {});
  }
  renewLease(leaseId) { return this.request('POST', `leases/${leaseId}/renew`, {}); }
  releaseLease(leaseId, { keepalive = false } = {}) { return this.request('POST', `leases/${leaseId}/release`, {}, { keepalive }); }
  submitJudgement(itemId, body) { return this.request('POST', `items/${itemId}/judgements`, body); }
  skip(itemId, leaseId, reason = '') { return this.request('POST', `items/${itemId}/skip`, { lease: leaseId, reason }); }
  flag(itemId, leaseId, reason, note = '') { return this.request('POST', `items/${itemId}/flag`, { lease: leaseId, reason, note }); }

  // --- artists ---
  async uploadArtistMesh(itemId, file) {
    let res;
    const form = new FormData();
    form.append('file', file);
    try {
      res = await this.fetch(this.url(`items/${itemId}/artist-mesh`), {
        method: 'POST', body: form, credentials: 'same-origin', headers: { 'X-CSRFToken': csrfToken() },
      });
    } catch {
      throw new ApiError('network', 'The upload could not reach the server; try again.');
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status >= 500 ? 'server' : 'invalid', data?.error?.message ?? `Upload failed (HTTP ${res.status}).`, { status: res.status });
    return data;
  }
}

/** A random UUID v4, also where crypto.randomUUID is missing (plain http on a LAN address). */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Judgements waiting for the server, kept in localStorage so that a failed submission survives a
 * reload. Each entry keeps its idempotency key: resending it can never store a judgement twice.
 */
export class Outbox {
  constructor(api, { storage = globalThis.localStorage, storageKey = 'workbench.outbox', onChange = () => {} } = {}) {
    this.api = api; this.storage = storage; this.storageKey = storageKey; this.onChange = onChange;
    this.entries = this._load();
    this.timer = null; this.delay = 1000; this.sending = false;
  }
  _load() { try { return JSON.parse(this.storage?.getItem(this.storageKey) ?? '[]'); } catch { return []; } }
  _save() { try { this.storage?.setItem(this.storageKey, JSON.stringify(this.entries)); } catch { /* full or private mode */ } }
  get pending() { return this.entries.length; }

  add(itemId, body) {
    this.entries.push({ itemId, body, attempts: 0 });
    this._save();
    return this.flush();
  }

  /** Send what is queued, in order. Resolves with [{entry, result|error}] for this pass. */
  flush() {
    if (this.sending) return this.inflight;
    this.sending = true;
    this.inflight = this._flush();
    return this.inflight;
  }

  /** Resolves once the submissions in flight have had their answer (or their retry scheduled). */
  settled() { return this.inflight ?? Promise.resolve([]); }

  async _flush() {
    const outcomes = [];
    try {
      while (this.entries.length) {
        const entry = this.entries[0];
        entry.attempts += 1;
        try {
          const result = await this.api.submitJudgement(entry.itemId, entry.body);
          this.entries.shift(); this._save();
          this.delay = 1000;
          outcomes.push({ entry, result });
        } catch (error) {
          if (error instanceof ApiError && error.retryable) {
            this._save();
            outcomes.push({ entry, error });
            this._schedule();
            break;
          }
          // Refused for good (lease lost, invalid): drop it and say so.
          this.entries.shift(); this._save();
          outcomes.push({ entry, error });
        }
      }
    } finally {
      this.sending = false;
      this.onChange(outcomes, this);
    }
    return outcomes;
  }

  _schedule() {
    clearTimeout(this.timer);
    const jitter = 0.5 + Math.random();
    this.timer = setTimeout(() => this.flush(), Math.min(30000, this.delay * jitter));
    this.delay = Math.min(30000, this.delay * 2);
  }
}
