import { describe, expect, it, vi } from 'vitest';
import { Api, ApiError, Outbox } from '../src/api.js';

class MemoryStorage {
  constructor() { this.data = new Map(); }
  getItem(k) { return this.data.has(k) ? this.data.get(k) : null; }
  setItem(k, v) { this.data.set(k, String(v)); }
}

const json = (status, body) => ({
  status, ok: status >= 200 && status < 300, json: async () => body,
});

function fakeApi(responses) {
  const calls = [];
  const fetchImpl = vi.fn(async (url, init) => {
    calls.push({ url, body: JSON.parse(init.body) });
    const next = responses.shift();
    if (next instanceof Error) throw next;
    return next;
  });
  return { api: new Api({ fetchImpl }), calls };
}

globalThis.document = { cookie: 'csrftoken=abc', querySelector: () => null };

describe('Outbox', () => {
  it('retries a failed submission with the same idempotency key and never loses it', async () => {
    vi.useFakeTimers();
    const { api, calls } = fakeApi([new TypeError('offline'), json(503, {}), json(201, { id: 9 })]);
    const storage = new MemoryStorage();
    const outcomes = [];
    const box = new Outbox(api, { storage, onChange: (o) => outcomes.push(...o) });
    await box.add(42, { lease: 1, key: 'k-1', winner: 3 });
    expect(box.pending).toBe(1);
    expect(JSON.parse(storage.getItem('workbench.outbox'))[0].body.key).toBe('k-1'); // survives a reload
    expect(outcomes[0].error.kind).toBe('network');
    await vi.runOnlyPendingTimersAsync();
    await box.settled();
    expect(outcomes[1].error.kind).toBe('server');
    await vi.runOnlyPendingTimersAsync();
    await box.settled();
    expect(box.pending).toBe(0);
    expect(outcomes[2].result).toEqual({ id: 9 });
    expect(calls.map((c) => c.body.key)).toEqual(['k-1', 'k-1', 'k-1']);
    expect(calls[0].url).toBe('/api/v1/items/42/judgements');
    vi.useRealTimers();
  });

  it('drops a submission the server refuses for good and says why', async () => {
    const { api } = fakeApi([json(409, { error: { code: 'lease_lost', message: 'gone' } }), json(201, { id: 2 })]);
    const outcomes = [];
    const box = new Outbox(api, { storage: new MemoryStorage(), onChange: (o) => outcomes.push(...o) });
    await box.add(1, { key: 'a' });
    expect(outcomes[0].error).toBeInstanceOf(ApiError);
    expect(outcomes[0].error.kind).toBe('lease');
    expect(box.pending).toBe(0);
    await box.add(2, { key: 'b' });
    expect(outcomes[1].result).toEqual({ id: 2 });
  });

  it('resumes what a previous page left in storage', async () => {
    const storage = new MemoryStorage();
    storage.setItem('workbench.outbox', JSON.stringify([{ itemId: 5, body: { key: 'old' }, attempts: 1 }]));
    const { api, calls } = fakeApi([json(200, { id: 1 })]);
    const box = new Outbox(api, { storage });
    expect(box.pending).toBe(1);
    await box.flush();
    expect(calls[0].body.key).toBe('old');
    expect(box.pending).toBe(0);
  });
});
