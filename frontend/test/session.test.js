import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/api.js';
import { ItemSession } from '../src/session.js';

class MemoryStorage {
  constructor() { this.data = new Map(); }
  getItem(k) { return this.data.has(k) ? this.data.get(k) : null; }
  setItem(k, v) { this.data.set(k, String(v)); }
}

const payload = (id) => ({
  item: { id, candidates: [{ id: id * 10, glb_url: '/a' }, { id: id * 10 + 1, glb_url: '/b' }], image: { url: '/p', width: 4, height: 4 }, mask: {} },
  lease: { id: 100 + id, seconds: 300 },
});

/** The Api's item contract over a queue of items; judgements wait until `land()` is called. */
function fakeApi(ids) {
  const queue = ids.map(payload);
  const landing = [];
  return {
    asked: [], judged: [],
    nextItem(slug, { exclude = [] } = {}) { this.asked.push(exclude); return Promise.resolve(queue.shift() ?? null); },
    bytes: async () => new ArrayBuffer(8),
    imageBitmap: async () => ({}),
    submitJudgement(itemId, body) {
      this.judged.push({ itemId, body });
      return new Promise((resolve) => landing.push(() => resolve({ id: itemId })));
    },
    land() { landing.splice(0).forEach((f) => f()); },
    renewLease: vi.fn(async () => ({})),
    releaseLease: vi.fn(async () => null),
  };
}

const sessions = [];
function open(api, options = {}) {
  const s = new ItemSession(api, { slug: 'p', outbox: { storage: new MemoryStorage() }, ...options });
  sessions.push(s);
  return s;
}
const tick = () => new Promise((r) => setTimeout(r, 0));
const judgement = { comparisons: [], ranking: null, winner: 10, rating: 4, layout: null };

afterEach(() => { sessions.splice(0).forEach((s) => clearInterval(s.renewTimer)); vi.useRealTimers(); });

describe('ItemSession', () => {
  it('shows the prefetched item at once after a submission, while the judgement is still on its way', async () => {
    const api = fakeApi([1, 2]);
    const session = open(api);
    expect((await session.advance()).item.id).toBe(1);
    session.prefetch(); // the first pair is drawn
    expect(api.asked).toEqual([[], [1]]); // the item on screen is not handed out again
    session.submit(judgement);
    const next = await session.advance();
    expect(next.item.id).toBe(2);
    expect(session.pending).toBe(1);
    expect(api.judged[0]).toMatchObject({ itemId: 1, body: { lease: 101, winner: 10, rating: 4 } });
    api.land();
    await session.outbox.settled();
    expect(session.done).toBe(1);
  });

  it('without a prefetched item, asks for the next one only once the judgement has landed', async () => {
    const api = fakeApi([1, 2]);
    const session = open(api);
    await session.advance();
    session.submit(judgement);
    const next = session.advance();
    await tick();
    expect(api.asked).toEqual([[]]); // still waiting: the server would hand back item 1
    api.land();
    expect((await next).item.id).toBe(2);
  });

  it('submits an item once, with a fresh idempotency key per item', async () => {
    const api = fakeApi([1, 2]);
    const session = open(api);
    await session.advance();
    session.submit(judgement);
    session.submit(judgement);
    api.land();
    await session.advance();
    session.submit(judgement);
    expect(api.judged.map((j) => j.itemId)).toEqual([1, 2]);
    expect(api.judged[0].body.key).not.toBe(api.judged[1].body.key);
  });

  it('renews the lease a third of the way through it, and says so when it went to someone else', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const api = fakeApi([1]);
    const onLease = vi.fn();
    const session = open(api, { onLease });
    await session.advance();
    api.renewLease.mockRejectedValueOnce(new ApiError('lease', 'gone', { status: 409 }));
    await vi.advanceTimersByTimeAsync(99_000);
    expect(api.renewLease).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(api.renewLease).toHaveBeenCalledWith(101);
    expect(onLease).toHaveBeenCalledWith('lost');
  });
});
