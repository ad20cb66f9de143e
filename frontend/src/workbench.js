// The workbench controller: asks for items, runs the protocol, submits, prefetches.
// Talks to the server only through api.js and to three only through the viewer facade.
import { Api, ApiError, Outbox, newKey } from './api.js';
import { actionFor, bindingsFor, keyLabel } from './keymap.js';
import { PhotoPanel } from './photo.js';
import {
  depthToPoints, intrinsicsFor, layoutOverlap, parseNpy, rleDecode,
} from './projection.js';
import { FullRanking, KingOfTheHill } from './tournament.js';
import * as viewerFacade from './viewer.js';

const RENEW_FRACTION = 1 / 3; // renew when a third of the lease has passed
const $ = (root, sel) => root.querySelector(sel);

/**
 * Download what an item needs before it is shown: the photo and the first pair's GLBs. The other
 * candidates keep downloading in the background (their promises are in `glbs`); a prefetched item
 * has had time to finish them all.
 */
async function prepare(api, payload, { all = false } = {}) {
  if (!payload) return null;
  const { item } = payload;
  const glbs = new Map();
  const fetchGlb = (c) => {
    const p = api.bytes(c.glb_compact_url || c.glb_url);
    p.catch(() => {}); // reported when the candidate is shown
    glbs.set(c.id, p);
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
      const p = after.then(() => api.bytes(c.glb_compact_url || c.glb_url));
      p.catch(() => {});
      glbs.set(c.id, p);
    }
  }
  const [photo] = await Promise.all([photoP, ...(all ? [...glbs.values()] : firstPair)]);
  let cloud = null;
  if (item.image.depth_url) {
    try {
      const { shape, data } = parseNpy(await api.bytes(item.image.depth_url));
      cloud = depthToPoints(data, shape[1], shape[0], intrinsicsFor(item.image), 3);
    } catch { cloud = null; } // the point cloud is a help, not a requirement
  }
  const mask = item.mask?.rle ? rleDecode(item.mask.rle) : null;
  return { ...payload, photo, glbs, mask, cloud, receivedAt: performance.now() };
}

export class Workbench {
  constructor(root, { slug, apiBase = '/api/v1/' }) {
    this.root = root; this.slug = slug;
    this.api = new Api({ base: apiBase });
    this.outbox = new Outbox(this.api, { onChange: (o) => this._onOutbox(o) });
    this._build();
    this.viewer = viewerFacade.setup($(root, '.wb-stage'));
    this.photo = new PhotoPanel({ full: $(root, '.wb-photo canvas'), crops: [...root.querySelectorAll('.wb-crop canvas')] });
    this.current = null; this.next = null; this.stage = 'loading';
    this.done = 0; this.overlay = true; this.renewTimer = null; this.large = false;
    this.itemsShown = 0;
    this.timings = { firstRender: null, nextItem: [], memory: [] };
    this._onKey = this._onKey.bind(this);
    document.addEventListener('keydown', this._onKey);
    this.viewer.stage.addEventListener('viewer:layout-change', (e) => this._onLayoutChange(e.detail));
    this.viewer.stage.addEventListener('viewer:layout-start', () => this._pushLayoutUndo());
    this.viewer.stage.addEventListener('viewer:rendered', () => this._onRendered());
    window.addEventListener('pagehide', () => this._releaseAll());
    window.addEventListener('online', () => this.outbox.flush());
    window.workbench = this; // for the browser tests and the bench
  }

  _build() {
    this.root.innerHTML = `
      <div class="wb-top">
        <div class="wb-progress" aria-label="tournament progress"><div class="bar"></div><span class="label"></span></div>
        <span class="wb-counter" title="items submitted in this session">Done this session: <b>0</b><i class="pending"></i></span>
        <span class="wb-item"></span>
      </div>
      <div class="wb-message" role="status" aria-live="polite" hidden></div>
      <div class="wb-body">
        <aside class="wb-photo"><canvas></canvas><div class="wb-photo-label muted"></div>
          <div class="wb-crop"><figure><canvas></canvas><figcaption>left on photo</figcaption></figure>
          <figure><canvas></canvas><figcaption>right on photo</figcaption></figure></div>
        </aside>
        <section class="wb-stage">
          <div class="wb-orbit" data-orbit>
            <div class="wb-view" data-view="left"><span class="tag">left <kbd>1</kbd></span><span class="poly"></span></div>
            <div class="wb-view" data-view="right"><span class="tag">right <kbd>3</kbd></span><span class="poly"></span></div>
          </div>
          <div class="wb-layout" hidden><div class="wb-layout-view"></div>
            <div class="wb-overlap">mask overlap: <b>–</b></div></div>
          <div class="wb-modes"></div>
        </section>
      </div>
      <div class="wb-rate" hidden></div>
      <div class="wb-strip"></div>
      <footer class="wb-keys"></footer>`;
  }

  // ---------------- flow ----------------
  async start() {
    performance.mark('wb:start');
    this.outbox.flush();
    const first = this.advance(); // the next-item request leaves in a microtask...
    setTimeout(() => this.viewer.warmUp(), 0); // ...then shaders compile while it is answered
    await first;
  }

  async advance() {
    this._setStage('loading');
    if (this.current) this.timings.memory.push({ ...this.viewer.renderer.info.memory }); // GPU memory as the item leaves
    this.viewer.clear();
    this.photo.clear();
    const previous = this.current;
    this.current = null;
    clearInterval(this.renewTimer);
    let session = null;
    try {
      if (this.next) {
        session = await this.next;
        this.next = null;
        if (session && previous && session.item.id === previous.item.id) session = null;
      }
      if (!session) {
        performance.mark('wb:next-item');
        // Without a prefetched item the server still holds our lease until the judgement lands:
        // asking before that would hand back the item just judged.
        await this.outbox.settled();
        session = await prepare(this.api, await this.api.nextItem(this.slug));
        if (session && previous && session.item.id === previous.item.id && previous.submitted) session = null;
      }
    } catch (err) {
      this.next = null;
      this._error(err, 'Could not load the next item (press R to try again).');
      this._setStage('done');
      return;
    }
    if (!session) {
      this._message('No item is waiting for you in this project. Press R to look again.', 'info');
      this._setStage('done');
      return;
    }
    await this._show(session);
  }

  async _show(session) {
    performance.mark('wb:prepared');
    const { item } = session;
    this.current = session;
    session.startedAt = performance.now();
    session.decisionStart = performance.now();
    session.key = newKey();
    session.rating = null; session.layout = null; session.layoutUndo = [];
    this._message('');
    const K = intrinsicsFor(item.image);
    session.K = K;
    this.photo.setItem({ bitmap: session.photo, width: item.image.width, height: item.image.height, mask: session.mask, bbox: item.mask.bbox, K });
    $(this.root, '.wb-photo-label').textContent = `${item.mask.label || 'object'} · ${item.image.width}×${item.image.height}${item.image.intrinsics ? '' : ' · default camera (60° fov)'}`;
    $(this.root, '.wb-item').textContent = `item ${item.id}`;
    const ids = item.candidates.map((c) => c.id);
    session.byId = new Map(item.candidates.map((c) => [c.id, c]));
    if (item.protocol === 'full_ranking') {
      session.ranking = new FullRanking(ids);
      session.tournament = null;
    } else {
      session.tournament = new KingOfTheHill(ids, item.sides ?? []);
      session.ranking = null;
    }
    this._buildStrip();
    this._startRenewal();
    this.itemsShown += 1;
    const pair = this._pair();
    await Promise.all(pair.map((id) => this._ensureLoaded(id)));
    if (this.current !== session) return;
    this._setStage(session.tournament ? (session.tournament.done ? 'rate' : 'compare') : 'rank');
    this._refresh(true);
    // Parse the other candidates while the annotator looks at the first pair.
    queueMicrotask(async () => {
      for (const id of ids) { if (this.current === session) await this._ensureLoaded(id); }
    });
  }

  async _ensureLoaded(id) {
    const s = this.current;
    if (!s || this.viewer.has(id)) return;
    try {
      const buf = await s.glbs.get(id);
      if (this.current !== s || this.viewer.has(id)) return;
      const stats = await this.viewer.load(id, buf.slice(0));
      if (stats && s.byId.get(id)) s.byId.get(id).loaded = stats;
    } catch (err) {
      this._message(`Candidate ${id} could not be displayed (${err.message}). Flag the item with F if this persists.`, 'error');
    }
  }

  _onRendered() {
    const s = this.current;
    if (s && !s.firstRendered) {
      // Timings for bench/workbench.py: navigation -> first pair drawn, submit -> next pair drawn.
      s.firstRendered = performance.now();
      if (this.timings.firstRender == null) this.timings.firstRender = s.firstRendered;
      if (this.submittedAt != null) { this.timings.nextItem.push(s.firstRendered - this.submittedAt); this.submittedAt = null; }
    }
    // The first pair is on screen: now fetch the next item in the background.
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
        return payload ? prepare(this.api, payload, { all: true }) : null;
      })
      .catch(() => null);
  }

  /** The candidates on screen now, left to right. */
  _pair() {
    const s = this.current;
    if (!s) return [];
    if (s.tournament) {
      const p = s.tournament.current();
      return p ? [p.left, p.right] : [s.tournament.winner];
    }
    const r = s.ranking;
    if (this.stage === 'rate' || this.large) return [r.selected];
    const e = r.entries; const i = r.cursor;
    const other = e[i + 1] ?? e[i - 1];
    return other ? [r.selected, other.id] : [r.selected];
  }

  _refresh(reframe = false) {
    const s = this.current;
    if (!s) return;
    const pair = this._pair();
    this.root.classList.toggle('single', pair.length === 1);
    this.viewer.show(pair, { reframe });
    pair.forEach((id, side) => {
      const c = s.byId.get(id);
      const stats = c?.loaded;
      const view = this.root.querySelectorAll('.wb-view')[side];
      const tris = c?.num_faces || stats?.triangles || 0;
      $(view, '.poly').textContent = `#${s.item.candidates.indexOf(c) + 1} · ${fmtCount(tris)} triangles`;
      const geometry = this.viewer.geometry(id);
      this.photo.drawCrop(side, geometry, c?.layout, { overlay: this.overlay });
    });
    if (pair.length < 2) this.photo.clearCrop(1);
    const tags = this.root.querySelectorAll('.wb-view .tag');
    if (this.stage === 'rate' || this.stage === 'layout') { tags[0].innerHTML = 'winner'; }
    else if (s.ranking) {
      const rank = new Map();
      s.ranking.groups().forEach((g, gi) => g.forEach((id) => rank.set(id, gi + 1)));
      const below = s.ranking.entries[s.ranking.cursor + 1]?.id === pair[1];
      tags[0].innerHTML = `selected · rank ${rank.get(pair[0])}`;
      if (pair[1] != null) tags[1].innerHTML = `${below ? 'below' : 'above'} it · rank ${rank.get(pair[1])}`;
    }
    else { tags[0].innerHTML = 'left <kbd>1</kbd>'; tags[1].innerHTML = 'right <kbd>3</kbd>'; }
    this._updateStrip();
    this._updateProgress();
    this._updateModes();
  }

  // ---------------- stages ----------------
  _setStage(stage) {
    this.stage = stage;
    this.root.dataset.stage = stage;
    $(this.root, '.wb-rate').hidden = stage !== 'rate' && stage !== 'layout';
    $(this.root, '.wb-layout').hidden = stage !== 'layout';
    $(this.root, '.wb-orbit').hidden = stage === 'layout';
    this._renderRate();
    this._renderKeys();
  }

  _renderKeys() {
    const labels = this.current?.item.quality_scale?.labels;
    const items = bindingsFor(this.stage, { ratingLabels: labels });
    $(this.root, '.wb-keys').innerHTML = items
      .map((b) => `<span class="key">${b.keys.map((k) => `<kbd>${esc(keyLabel(k))}</kbd>`).join('/')} ${esc(b.label)}</span>`)
      .join('');
  }

  _renderRate() {
    const el = $(this.root, '.wb-rate');
    const s = this.current;
    if (!s || el.hidden) return;
    const q = s.item.quality_scale ?? { min: 1, max: 5, threshold: 3, labels: {} };
    const buttons = [];
    for (let n = q.min; n <= q.max; n++) {
      buttons.push(`<span class="rating${s.rating === n ? ' chosen' : ''}${n < q.threshold ? ' below' : ''}"><kbd>${n}</kbd> ${esc(q.labels?.[n] ?? '')}</span>`);
    }
    const next = s.rating == null ? 'Rate the winner with a digit.'
      : (this.stage === 'rate' && s.item.layout_stage ? 'Enter: adjust its layout.' : 'Enter: submit.');
    el.innerHTML = `<strong>Quality of the winner</strong> ${buttons.join('')}
      <span class="muted">below ${q.threshold}: no acceptable candidate (hard case). ${next}</span>`;
  }

  _onKey(ev) {
    if (ev.target.closest?.('input, textarea, select')) return;
    const action = actionFor(ev, this.stage);
    if (!action) return;
    ev.preventDefault();
    if (action === 'retry') { this.advance(); return; }
    this.perform(action);
  }

  /** Run one action by name (what the keys and the on-screen buttons do). */
  perform(action) {
    const s = this.current;
    if (!s) return;
    if (action === 'turntable') { this.viewer.setTurntable(!this.viewer.turntable); this._updateModes(); return; }
    if (action === 'cycle-mode') { this.viewer.cycleMode(); this._updateModes(); return; }
    if (action === 'overlay') { this.overlay = !this.overlay; this._refresh(); return; }
    if (action === 'skip') { this._skip(); return; }
    if (action === 'flag') { this._setStage('flag'); this._message('Flag this item: 1 bad mask, 2 bad photo, 3 other; Esc to cancel.', 'info'); return; }
    if (action.startsWith('flag-')) { this._flag(action.slice(5)); return; }
    if (action === 'cancel') {
      this._message('');
      if (this.stage === 'layout') { this.viewer.exitLayout(); this._setStage('rate'); this._refresh(); }
      else this._setStage(this._baseStage());
      return;
    }
    switch (this.stage) {
      case 'compare': return this._compareAction(action);
      case 'rank': return this._rankAction(action);
      case 'rate': return this._rateAction(action);
      case 'layout': return this._layoutAction(action);
      default: return undefined;
    }
  }

  _baseStage() {
    const s = this.current;
    if (s.tournament) return s.tournament.done ? 'rate' : 'compare';
    return s.rankingDone ? 'rate' : 'rank';
  }

  _compareAction(action) {
    const t = this.current.tournament;
    if (action === 'undo') { t.undo(); this._afterDecision(); return; }
    if (!['left', 'equal', 'right'].includes(action)) return;
    t.decide(action, performance.now() - this.current.decisionStart);
    this._afterDecision();
  }

  async _afterDecision() {
    const s = this.current;
    s.decisionStart = performance.now();
    this._setStage(s.tournament.done ? 'rate' : 'compare');
    await Promise.all(this._pair().map((id) => this._ensureLoaded(id)));
    if (this.current === s) this._refresh();
  }

  _rankAction(action) {
    const r = this.current.ranking;
    if (action === 'cursor-up') r.moveCursor(-1);
    else if (action === 'cursor-down') r.moveCursor(1);
    else if (action === 'move-up') r.move(-1);
    else if (action === 'move-down') r.move(1);
    else if (action === 'tie') r.toggleTie();
    else if (action === 'undo') r.undo();
    else if (action === 'view-large') this.large = !this.large;
    else if (action === 'confirm-ranking') {
      this.current.rankingDone = true; this.large = false; r.cursor = 0;
      this._setStage('rate');
    }
    this._afterRankEdit();
  }

  async _afterRankEdit() {
    const s = this.current;
    await Promise.all(this._pair().map((id) => this._ensureLoaded(id)));
    if (this.current === s) this._refresh();
  }

  _rateAction(action) {
    const s = this.current;
    if (action.startsWith('rate-')) { s.rating = Number(action.slice(5)); this._renderRate(); return; }
    if (action === 'undo') {
      if (s.rating != null) { s.rating = null; this._renderRate(); return; }
      if (s.tournament) { s.tournament.undo(); this._afterDecision(); }
      else { s.rankingDone = false; this._setStage('rank'); this._refresh(); }
      return;
    }
    if (action === 'layout') { this._enterLayout(); return; }
    if (action === 'submit') {
      if (s.rating == null) { this._message('Rate the winner first: press a digit.', 'warn'); return; }
      // The layout target matters only for an acceptable winner (the server requires it then).
      const threshold = s.item.quality_scale?.threshold ?? 0;
      if (s.item.layout_stage && !s.layoutVisited && s.rating >= threshold) { this._enterLayout(); return; }
      this._submit();
    }
  }

  // ---------------- layout stage ----------------
  _winner() {
    const s = this.current;
    return s.tournament ? s.tournament.winner : s.ranking.winner;
  }

  _enterLayout() {
    const s = this.current;
    if (s.rating == null) { this._message('Rate the winner first: press a digit.', 'warn'); return; }
    const id = this._winner();
    const c = s.byId.get(id);
    s.layoutVisited = true;
    s.layout = s.layout ?? structuredClone(c.layout);
    this._setStage('layout');
    this.viewer.enterLayout({
      id, K: s.K, width: s.item.image.width, height: s.item.image.height, layout: s.layout,
      background: this.photo.photoCanvas(), cloud: s.cloud, el: $(this.root, '.wb-layout-view'),
    });
    this._updateOverlap();
  }

  _pushLayoutUndo() {
    const s = this.current;
    if (s?.layout) s.layoutUndo.push(structuredClone(s.layout));
  }

  _onLayoutChange({ layout }) {
    const s = this.current;
    if (!s || !layout) return;
    s.layout = layout;
    this._updateOverlap();
  }

  _updateOverlap() {
    if (this._overlapQueued) return;
    this._overlapQueued = true;
    requestAnimationFrame(() => {
      this._overlapQueued = false;
      const s = this.current;
      if (!s || this.stage !== 'layout' || !s.mask) return;
      const g = this.viewer.geometry(this._winner());
      const o = layoutOverlap({ ...g, layout: s.layout, K: s.K, width: s.item.image.width, height: s.item.image.height, mask: s.mask });
      s.overlap = o;
      $(this.root, '.wb-overlap b').textContent = `${(100 * o).toFixed(1)}% IoU`;
    });
  }

  _layoutAction(action) {
    const s = this.current;
    const L = s.layout;
    const dist = Math.hypot(...L.translation) || 1;
    const step = 0.01 * dist;
    const nudge = (axis, d) => { this._pushLayoutUndo(); L.translation[axis] += d; };
    switch (action) {
      case 'mode-translate': this.viewer.setLayoutMode('translate'); return;
      case 'mode-rotate': this.viewer.setLayoutMode('rotate'); return;
      case 'mode-scale': this.viewer.setLayoutMode('scale'); return;
      case 'nudge-x-': nudge(0, -step); break;
      case 'nudge-x+': nudge(0, step); break;
      case 'nudge-y+': nudge(1, step); break;
      case 'nudge-y-': nudge(1, -step); break;
      case 'nudge-z-': nudge(2, -5 * step); break;
      case 'nudge-z+': nudge(2, 5 * step); break;
      case 'scale-up': this._pushLayoutUndo(); L.scale = L.scale.map((v) => v * 1.05); break;
      case 'scale-down': this._pushLayoutUndo(); L.scale = L.scale.map((v) => v / 1.05); break;
      case 'layout-reset': this._pushLayoutUndo(); s.layout = structuredClone(s.byId.get(this._winner()).layout); break;
      case 'undo': if (!s.layoutUndo.length) return; s.layout = s.layoutUndo.pop(); break;
      case 'submit': this._submit(); return;
      default: return;
    }
    this.viewer.setLayout(s.layout);
    this._updateOverlap();
  }

  // ---------------- submit, skip, flag ----------------
  _submit() {
    const s = this.current;
    if (!s || s.submitted) return;
    s.submitted = true;
    const layoutRan = this.stage === 'layout' || Boolean(s.layoutVisited);
    const body = {
      lease: s.lease.id,
      key: s.key,
      comparisons: s.tournament ? s.tournament.comparisons() : [],
      ranking: s.ranking ? s.ranking.groups() : null,
      winner: this._winner(),
      rating: s.rating,
      layout: layoutRan ? s.layout : null,
      time_spent_ms: Math.round(performance.now() - s.startedAt),
    };
    this.submittedAt = performance.now();
    this.outbox.add(s.item.id, body); // retried with the same key until the server answers
    this._updateCounter();
    this.advance();
  }

  async _skip() {
    const s = this.current;
    try { await this.api.skip(s.item.id, s.lease.id, 'skipped by the annotator'); }
    catch (err) { if (err.kind !== 'lease') { this._error(err, 'Could not skip.'); return; } }
    this.advance();
  }

  async _flag(reason) {
    const s = this.current;
    try { await this.api.flag(s.item.id, s.lease.id, reason, ''); }
    catch (err) { if (err.kind !== 'lease') { this._error(err, 'Could not flag.'); this._setStage(this._baseStage()); return; } }
    this._message(`Item ${s.item.id} flagged (${reason.replace('_', ' ')}).`, 'info');
    this.advance();
  }

  _onOutbox(outcomes) {
    for (const { entry, result, error } of outcomes) {
      if (result) { this.done += 1; continue; }
      if (error?.retryable) {
        this._message(`Saving item ${entry.itemId} failed (${error.message}). It will be retried automatically, nothing is lost.`, 'warn');
      } else if (error?.kind === 'lease') {
        this._message(`Item ${entry.itemId}: your lease expired and another annotator has it now, so this judgement was not stored.`, 'error');
      } else if (error) {
        this._message(`Item ${entry.itemId} was not stored: ${error.message}`, 'error');
      }
    }
    this._updateCounter();
  }

  // ---------------- leases ----------------
  _startRenewal() {
    clearInterval(this.renewTimer);
    const s = this.current;
    const seconds = s.lease.seconds || 300;
    this.renewTimer = setInterval(() => this._renew(), Math.max(5, seconds * RENEW_FRACTION) * 1000);
  }

  async _renew() {
    const s = this.current;
    if (s && !s.submitted) {
      try {
        const r = await this.api.renewLease(s.lease.id);
        if (r?.expires_at) s.lease.expires_at = r.expires_at;
      } catch (err) {
        if (err.kind === 'lease' || err.status === 404 || err.status === 409) {
          s.leaseLost = true;
          this._message('Your lease on this item expired and it went back to the queue; another annotator may have it. Press S for the next item.', 'error');
        } else if (err.kind === 'network') {
          this._message('Connection lost: the lease could not be renewed. Keep working; it is retried.', 'warn');
        }
      }
    }
    const n = this.next && (await Promise.race([this.next, Promise.resolve(undefined)]));
    if (n?.lease) this.api.renewLease(n.lease.id).catch(() => { this.next = null; });
  }

  _releaseAll() {
    const s = this.current;
    if (s && !s.submitted) this.api.releaseLease(s.lease.id, { keepalive: true }).catch(() => {});
    Promise.race([this.next, Promise.resolve(undefined)]).then((n) => {
      if (n?.lease) this.api.releaseLease(n.lease.id, { keepalive: true }).catch(() => {});
    });
  }

  // ---------------- small views ----------------
  _buildStrip() {
    const s = this.current;
    $(this.root, '.wb-strip').innerHTML = s.item.candidates.map((c, i) => `
      <figure data-id="${c.id}"><img src="${esc(c.preview_url)}" alt="candidate ${i + 1}" loading="eager" decoding="async">
      <figcaption>#${i + 1} · ${fmtCount(c.num_faces)} tris</figcaption></figure>`).join('');
  }

  _updateStrip() {
    const s = this.current;
    const pair = new Set(this._pair());
    let inPlay; let rankOf = null;
    if (s.tournament) inPlay = s.tournament.inPlay();
    else {
      inPlay = new Set(s.item.candidates.map((c) => c.id));
      rankOf = new Map();
      s.ranking.groups().forEach((g, gi) => g.forEach((id) => rankOf.set(id, gi + 1)));
    }
    for (const fig of this.root.querySelectorAll('.wb-strip figure')) {
      const id = Number(fig.dataset.id);
      fig.classList.toggle('out', !inPlay.has(id));
      fig.classList.toggle('shown', pair.has(id));
      fig.classList.toggle('king', Boolean(s.tournament && s.tournament.king === id));
      if (rankOf) fig.dataset.rank = rankOf.get(id);
    }
    if (s.ranking) {
      const order = s.ranking.entries.map((e) => e.id);
      const strip = $(this.root, '.wb-strip');
      for (const id of order) strip.append(strip.querySelector(`figure[data-id="${id}"]`));
      s.ranking.entries.forEach((e) => strip.querySelector(`figure[data-id="${e.id}"]`).classList.toggle('tied', e.tie));
    }
  }

  _updateProgress() {
    const s = this.current;
    const el = $(this.root, '.wb-progress');
    if (s.tournament) {
      const t = s.tournament;
      const k = Math.min(t.k, t.total);
      el.querySelector('.bar').style.width = `${t.total ? (100 * t.history.length) / t.total : 100}%`;
      el.querySelector('.label').textContent = t.done ? `winner chosen (${t.total} comparisons)` : `comparison ${k} of ${t.total}`;
    } else {
      el.querySelector('.bar').style.width = s.rankingDone ? '100%' : '0%';
      el.querySelector('.label').textContent = `full ranking of ${s.item.candidates.length} (${s.ranking.groups().length} groups)`;
    }
  }

  _updateCounter() {
    const el = $(this.root, '.wb-counter');
    el.querySelector('b').textContent = String(this.done);
    el.querySelector('.pending').textContent = this.outbox.pending ? ` (${this.outbox.pending} saving…)` : '';
    this.root.dataset.done = String(this.done);
  }

  _updateModes() {
    $(this.root, '.wb-modes').innerHTML = `view: <b>${this.viewer.mode}</b> <kbd>M</kbd> · turntable ${this.viewer.turntable ? 'on' : 'off'} <kbd>Space</kbd> · overlay ${this.overlay ? 'on' : 'off'} <kbd>O</kbd>`;
  }

  _message(text, level = 'info') {
    const el = $(this.root, '.wb-message');
    el.hidden = !text; el.textContent = text; el.dataset.level = level;
  }

  _error(err, prefix) {
    if (err instanceof ApiError) {
      const what = { network: 'Network error', auth: 'You are logged out or lack the annotator role', lease: 'Lease expired' }[err.kind] ?? 'Error';
      this._message(`${prefix} ${what}: ${err.message}`, 'error');
    } else {
      this._message(`${prefix} ${err?.message ?? err}`, 'error');
    }
  }
}

function fmtCount(n) { return n >= 10000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n ?? 0); }
function esc(s) { return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]); }
