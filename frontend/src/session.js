// The item session, no DOM: the item on screen and the one prefetched behind it, the lease on
// each (renewed while the annotator works, released when the page goes away), skips and flags,
// and the judgements on their way to the server (the outbox keeps them, with their idempotency
// key, until the server answers). Talks to the server only through api.js; tells its owner what
// happened through the callbacks it was given.
import { Outbox, newKey } from './api.js';
import { depthToPoints, intrinsicsFor, parseNpy, rleDecode } from './projection.js';
import { defaultMode, drawnAs } from './representation.js';

const RENEW_FRACTION = 1 / 3; // renew when a third of the lease has passed

/**
 * Download what an item needs before it is shown: the photo and the first pair's compact copies,
 * each of the representation it is drawn as in the project's judged representation (GLB or
 * splat). The other candidates keep downloading in the background (their promises are in `glbs`
 * and `splats`); a prefetched item has had time to finish them all. The other representation of a
 * candidate is fetched when a view mode asks for it (`assetBytes`).
 */
export async function prepare(api, payload, { all = false } = {}) {
  if (!payload) return null;
  const { item } = payload;
  const glbs = new Map();
  const splats = new Map();
  const mode = defaultMode(item.judged_representation);
  const fetchGlb = (c) => {
    const splat = drawnAs(mode, c).as === 'splat';
    const p = api.bytes(splat ? c.splat_url : (c.glb_compact_url || c.glb_url));
    p.catch(() => {}); // reported when the candidate is shown
    (splat ? splats : glbs).set(c.id, p);
    return p;
  };
  const [first, rest] = [item.candidates.slice(0, 2), item.candidates.slice(2)];
  const firstPair = first.map(fetchGlb);
  const photoP = api.imageBitmap(item.image.url);
  if (all) rest.forEach(fetchGlb);
  else {
    // The first pair and the photo go first; the other candidates queue behind them so that they
    // do not compete for the (shared) server and link while the annotator waits for the first pair.
    const after = Promise.allSettled([photoP, ...firstPair]);
    for (const c of rest) {
      const splat = drawnAs(mode, c).as === 'splat';
      const p = after.then(() => api.bytes(splat ? c.splat_url : (c.glb_compact_url || c.glb_url)));
      p.catch(() => {});
      (splat ? splats : glbs).set(c.id, p);
    }
  }
  const [photo] = await Promise.all([photoP, ...(all ? [...glbs.values(), ...splats.values()] : firstPair)]);
  let cloud = null;
  if (item.image.depth_url) {
    try {
      const { shape, data } = parseNpy(await api.bytes(item.image.depth_url));
      cloud = depthToPoints(data, shape[1], shape[0], intrinsicsFor(item.image), 3);
    } catch { cloud = null; } // the point cloud is a help, not a requirement
  }
  const mask = item.mask?.rle ? rleDecode(item.mask.rle) : null;
  return { ...payload, photo, glbs, splats, mask, cloud, receivedAt: performance.now() };
}

/**
 * The bytes of candidate `c`'s compact mesh (kind 'mesh') or splat (kind 'splat') for a prepared
 * item: the download already under way, or a new one (kept for the item's life).
 */
export function assetBytes(api, prepared, c, kind) {
  const map = kind === 'splat' ? prepared.splats : prepared.glbs;
  if (!map.has(c.id)) {
    const url = kind === 'splat' ? c.splat_url : (c.glb_compact_url || c.glb_url);
    if (!url) return Promise.reject(new Error(`candidate ${c.id} has no ${kind}`));
    const p = api.bytes(url);
    p.catch(() => {});
    map.set(c.id, p);
  }
  return map.get(c.id);
}

export class ItemSession {
  /**
   * @param {import('./api.js').Api} api
   * @param {object} options
   * @param {string} options.slug the project
   * @param {(outcomes: object[]) => void} [options.onOutbox] after each outbox pass, with its
   *   outcomes [{entry, result|error}]; `done` already counts the stored ones
   * @param {(what: 'lost'|'offline') => void} [options.onLease] the lease on the item on screen
   *   went to someone else, or could not be renewed for want of a connection (it is retried)
   * @param {(payload: object) => void} [options.onPayload] a next-item payload arrived, before its
   *   files are downloaded (the page starts loading what drawing it will need, e.g. the splat renderer)
   * @param {object} [options.outbox] options for the Outbox (storage, storageKey)
   */
  constructor(api, { slug, onOutbox = () => {}, onLease = () => {}, onPayload = () => {}, outbox = {} }) {
    this.api = api; this.slug = slug; this.onLease = onLease; this.onPayload = onPayload;
    this.outbox = new Outbox(api, {
      ...outbox,
      onChange: (outcomes) => {
        this.done += outcomes.filter((o) => o.result).length;
        onOutbox(outcomes);
      },
    });
    this.current = null; // the prepared item on screen: the server's payload + photo, glbs, mask, cloud, key...
    this.next = null; // promise of the prefetched item (or null)
    this.done = 0; // judgements the server stored in this session
    this.renewTimer = null;
    this.prefetchUnsupported = false;
  }

  /** Judgements waiting for the server. */
  get pending() { return this.outbox.pending; }

  /** Send what a previous page left in the outbox. */
  flush() { return this.outbox.flush(); }

  /**
   * Leave the item on screen and take the next one: the prefetched one if any, else the server's.
   * Resolves with the prepared item (now `current`, its lease renewed from here on) or null when
   * none is waiting; rejects (an ApiError) when the next item cannot be loaded.
   */
  async advance() {
    const previous = this.current;
    this.current = null;
    clearInterval(this.renewTimer);
    let next = null;
    try {
      if (this.next) {
        next = await this.next;
        this.next = null;
        if (next && previous && next.item.id === previous.item.id) next = null;
      }
      if (!next) {
        performance.mark('wb:next-item');
        // Without a prefetched item the server still holds our lease until the judgement lands:
        // asking before that would hand back the item just judged.
        await this.outbox.settled();
        const payload = await this.api.nextItem(this.slug);
        if (payload) this.onPayload(payload);
        next = await prepare(this.api, payload);
        if (next && previous && next.item.id === previous.item.id && previous.submitted) next = null;
      }
    } catch (err) {
      this.next = null;
      throw err;
    }
    if (!next) return null;
    Object.assign(next, { startedAt: performance.now(), key: newKey(), submitted: false });
    this.current = next;
    this._startRenewal();
    return next;
  }

  /** Fetch the next item in the background (once the item on screen is drawn). */
  prefetch() {
    const s = this.current;
    if (!s || this.next || s.prefetchStarted || this.prefetchUnsupported) return;
    s.prefetchStarted = true;
    this.next = this.api.nextItem(this.slug, { exclude: [s.item.id] })
      .then((payload) => {
        if (payload && payload.item.id === s.item.id) {
          // The server hands back the lease we hold (no second lease: see docs/annotation-api.md,
          // "Workbench extension requests"); stop asking for the rest of the session.
          this.prefetchUnsupported = true;
          return null;
        }
        if (payload) this.onPayload(payload);
        return payload ? prepare(this.api, payload, { all: true }) : null;
      })
      .catch(() => null);
  }

  /**
   * Queue the judgement of the item on screen ({comparisons, ranking, winner, rating, layout});
   * the outbox retries it with the same key until the server answers. Once per item.
   */
  submit(judgement) {
    const s = this.current;
    if (!s || s.submitted) return;
    s.submitted = true;
    this.outbox.add(s.item.id, {
      lease: s.lease.id,
      key: s.key,
      ...judgement,
      time_spent_ms: Math.round(performance.now() - s.startedAt),
    });
  }

  /** Skip the item on screen. A lost lease is no error: the item is gone either way. */
  async skip() {
    const s = this.current;
    try { await this.api.skip(s.item.id, s.lease.id, 'skipped by the annotator'); }
    catch (err) { if (err.kind !== 'lease') throw err; }
  }

  /** Flag the item on screen (reason: bad_mask, bad_photo, other). */
  async flag(reason) {
    const s = this.current;
    try { await this.api.flag(s.item.id, s.lease.id, reason, ''); }
    catch (err) { if (err.kind !== 'lease') throw err; }
  }

  _startRenewal() {
    clearInterval(this.renewTimer);
    const seconds = this.current.lease.seconds || 300;
    this.renewTimer = setInterval(() => this.renew(), Math.max(5, seconds * RENEW_FRACTION) * 1000);
  }

  /** Renew the leases on the item on screen (unless judged) and on the prefetched one. */
  async renew() {
    const s = this.current;
    if (s && !s.submitted) {
      try {
        const r = await this.api.renewLease(s.lease.id);
        if (r?.expires_at) s.lease.expires_at = r.expires_at;
      } catch (err) {
        if (err.kind === 'lease' || err.status === 404 || err.status === 409) {
          s.leaseLost = true;
          this.onLease('lost');
        } else if (err.kind === 'network') {
          this.onLease('offline');
        }
      }
    }
    const n = this.next && (await Promise.race([this.next, Promise.resolve(undefined)]));
    if (n?.lease) this.api.renewLease(n.lease.id).catch(() => { this.next = null; });
  }

  /** Give both leases back as the page goes away (keepalive: the requests outlive the page). */
  releaseAll() {
    const s = this.current;
    if (s && !s.submitted) this.api.releaseLease(s.lease.id, { keepalive: true }).catch(() => {});
    Promise.race([this.next, Promise.resolve(undefined)]).then((n) => {
      if (n?.lease) this.api.releaseLease(n.lease.id, { keepalive: true }).catch(() => {});
    });
  }
}
