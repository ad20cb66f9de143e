// The workbench page, the DOM layer: builds the page, wires the keys, the viewer's events and the
// page's lifecycle to the item session (session.js: items, leases, submissions) and the stage
// reducer (stages.js: what each key does), and draws what they say. Talks to the server only
// through the session and to three only through the viewer facade.
import { Api, ApiError } from './api.js';
import { actionFor, bindingsFor, keyLabel } from './keymap.js';
import { PhotoPanel } from './photo.js';
import { intrinsicsFor, layoutOverlap } from './projection.js';
import { capabilities, defaultMode, drawnAs, modeLabel, nextMode, VIEW_MODES } from './representation.js';
import { ItemSession, assetBytes } from './session.js';
import { LOADING, pairOnScreen, reduce, winnerOf } from './stages.js';
import * as viewerFacade from './viewer.js';

const $ = (root, sel) => root.querySelector(sel);
const VIEWING = new Set(['compare', 'rank', 'rate']); // stages that show candidates in the orbit views

export class Workbench {
  constructor(root, { slug, apiBase = '/api/v1/' }) {
    this.root = root; this.slug = slug;
    this.api = new Api({ base: apiBase });
    this.session = new ItemSession(this.api, {
      slug,
      onOutbox: (outcomes) => this._onOutbox(outcomes),
      onLease: (what) => this._onLease(what),
      // A splat to draw: load Spark (2.5 MB, its WebAssembly compiled) while the files download.
      onPayload: ({ item }) => {
        const mode = defaultMode(item.judged_representation);
        if (item.candidates.some((c) => drawnAs(mode, c).as === 'splat')) viewerFacade.loadSpark();
      },
    });
    this._build();
    this.viewer = viewerFacade.setup($(root, '.wb-stage'));
    this.photo = new PhotoPanel({ full: $(root, '.wb-photo canvas'), crops: [...root.querySelectorAll('.wb-crop canvas')] });
    this.state = LOADING; // stages.js
    this.view = null; // what this page knows of the item on screen: {item, K, byId, stats, firstRendered, overlap}
    this.overlay = true;
    this.mode = 'textured'; // the view mode (representation.js); each item opens in its judged representation
    this.itemsShown = 0;
    this.timings = { firstRender: null, nextItem: [], memory: [] };
    this._renderStage();
    this._onKey = this._onKey.bind(this);
    document.addEventListener('keydown', this._onKey);
    this.viewer.stage.addEventListener('viewer:layout-change', (e) => this.dispatch({ type: 'layout-change', layout: e.detail.layout }));
    this.viewer.stage.addEventListener('viewer:layout-start', () => this.dispatch({ type: 'layout-start' }));
    this.viewer.stage.addEventListener('viewer:rendered', () => this._onRendered());
    window.addEventListener('pagehide', () => this.session.releaseAll());
    window.addEventListener('online', () => this.session.flush());
    window.workbench = this; // for the browser tests and the bench
  }

  get stage() { return this.state.stage; }

  /**
   * The item on screen as one read-only object (null while none is): the session's item (item,
   * lease, glbs, cloud...), its stage state (tournament, ranking, rating, layout...) and this
   * page's view of it (firstRendered, overlap). What the browser tests and bench/workbench.py read.
   */
  get current() {
    const s = this.session.current;
    if (!s || this.state.item !== s.item) return null;
    return { ...s, ...this.state, ...this.view };
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
            <div class="wb-view" data-view="left"><span class="tag">left <kbd>1</kbd></span><span class="note" hidden></span><span class="poly"></span></div>
            <div class="wb-view" data-view="right"><span class="tag">right <kbd>3</kbd></span><span class="note" hidden></span><span class="poly"></span></div>
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
    this.session.flush();
    const first = this.advance(); // the next-item request leaves in a microtask...
    setTimeout(() => this.viewer.warmUp(), 0); // ...then shaders compile while it is answered
    await first;
  }

  async advance() {
    this.dispatch({ type: 'loading' });
    if (this.session.current) this.timings.memory.push({ ...this.viewer.renderer.info.memory }); // GPU memory as the item leaves
    this.viewer.clear();
    this.photo.clear();
    let next;
    try {
      next = await this.session.advance();
    } catch (err) {
      this._error(err, 'Could not load the next item (press R to try again).');
      this.dispatch({ type: 'no-item' });
      return;
    }
    if (!next) {
      this._message('No item is waiting for you in this project. Press R to look again.', 'info');
      this.dispatch({ type: 'no-item' });
      return;
    }
    await this._show(next);
  }

  async _show(s) {
    performance.mark('wb:prepared');
    const { item } = s;
    this._message('');
    const K = intrinsicsFor(item.image);
    this.view = {
      item, K, byId: new Map(item.candidates.map((c) => [c.id, c])), stats: new Map(), firstRendered: null, overlap: null,
    };
    this.photo.setItem({ bitmap: s.photo, width: item.image.width, height: item.image.height, mask: s.mask, bbox: item.mask.bbox, K });
    $(this.root, '.wb-photo-label').textContent = `${item.mask.label || 'object'} · ${item.image.width}×${item.image.height}${item.image.intrinsics ? '' : ' · default camera (60° fov)'}`;
    $(this.root, '.wb-item').textContent = `item ${item.id}`;
    this.mode = this.viewer.setMode(defaultMode(item.judged_representation));
    this.dispatch({ type: 'item', item });
    this._buildStrip();
    this.itemsShown += 1;
    await Promise.all(this._pair().map((id) => this._ensureLoaded(id)));
    if (this.session.current !== s) return;
    this.dispatch({ type: 'ready' });
    this._refresh(true);
    // Parse the other candidates while the annotator looks at the first pair.
    queueMicrotask(async () => {
      for (const c of item.candidates) { if (this.session.current === s) await this._ensureLoaded(c.id); }
    });
  }

  /** How candidate `id` is drawn in the current view mode: {as: 'mesh'|'splat'|null, note}. */
  _drawn(id) { return drawnAs(this.mode, this.view?.byId.get(id)); }

  /** Download and decode what candidate `id` is drawn as in the current view mode. */
  async _ensureLoaded(id) {
    const s = this.session.current;
    const view = this.view;
    const { as } = this._drawn(id);
    if (!s || !as || this.viewer.has(id, as)) return;
    try {
      const buf = await assetBytes(this.session.api, s, view.byId.get(id), as);
      if (this.session.current !== s || this.viewer.has(id, as)) return;
      // A copy: the GLB parser and Spark's decoder may keep or transfer the buffer they get.
      const stats = as === 'splat' ? await this.viewer.loadSplat(id, new Uint8Array(buf.slice(0)))
        : await this.viewer.load(id, buf.slice(0));
      if (stats) view.stats.set(`${id}:${as}`, stats);
    } catch (err) {
      this._message(`Candidate ${id} could not be displayed (${err.message}). Flag the item with F if this persists.`, 'error');
    }
  }

  _onRendered() {
    const v = this.view;
    if (this.session.current && v?.item === this.session.current.item && v.firstRendered == null) {
      // Timings for bench/workbench.py: navigation -> first pair drawn, submit -> next pair drawn.
      v.firstRendered = performance.now();
      if (this.timings.firstRender == null) this.timings.firstRender = v.firstRendered;
      if (this.submittedAt != null) { this.timings.nextItem.push(v.firstRendered - this.submittedAt); this.submittedAt = null; }
    }
    // The first pair is on screen: now fetch the next item in the background.
    this.session.prefetch();
  }

  /** The candidates on screen now, left to right. */
  _pair() { return pairOnScreen(this.state); }

  _refresh(reframe = false) {
    const s = this.session.current;
    const st = this.state;
    if (!s || st.item !== s.item) return;
    const pair = this._pair();
    this.root.classList.toggle('single', pair.length === 1);
    const drawn = pair.map((id) => this._drawn(id));
    this.viewer.show(pair, { reframe, as: drawn.map((d) => d.as ?? 'mesh') });
    pair.forEach((id, side) => {
      const c = this.view.byId.get(id);
      const { as, note } = drawn[side];
      const view = this.root.querySelectorAll('.wb-view')[side];
      $(view, '.poly').textContent = `#${s.item.candidates.indexOf(c) + 1} · ${describe(c, as, this.view.stats.get(`${id}:${as}`))}`;
      // A candidate that lacks the representation of the view mode is drawn as what it has: say so.
      const noteEl = $(view, '.note');
      noteEl.textContent = note ?? '';
      noteEl.hidden = !note;
      view.dataset.drawnAs = as ?? '';
      this.photo.drawCrop(side, this.viewer.geometry(id, as ?? 'mesh'), c?.layout, { overlay: this.overlay });
    });
    if (pair.length < 2) this.photo.clearCrop(1);
    const tags = this.root.querySelectorAll('.wb-view .tag');
    if (st.stage === 'rate' || st.stage === 'layout') { tags[0].innerHTML = 'winner'; }
    else if (st.ranking) {
      const rank = new Map();
      st.ranking.groups().forEach((g, gi) => g.forEach((id) => rank.set(id, gi + 1)));
      const below = st.ranking.entries[st.ranking.cursor + 1]?.id === pair[1];
      tags[0].innerHTML = `selected · rank ${rank.get(pair[0])}`;
      if (pair[1] != null) tags[1].innerHTML = `${below ? 'below' : 'above'} it · rank ${rank.get(pair[1])}`;
    }
    else { tags[0].innerHTML = 'left <kbd>1</kbd>'; tags[1].innerHTML = 'right <kbd>3</kbd>'; }
    this._updateStrip();
    this._updateProgress();
    this._updateModes();
  }

  // ---------------- stages ----------------
  /** Run one action through the stage reducer and bring the page in line with the new state. */
  dispatch(action) {
    const prev = this.state;
    const next = reduce(prev, { at: performance.now(), ...action });
    if (next === prev) return;
    this.state = next;
    if (next.judgement && !prev.judgement) { this._submit(next.judgement); return; }
    if (next.notice && next.notice !== prev.notice) this._message(next.notice.text, next.notice.level);
    if (next.stage !== prev.stage) {
      if (prev.stage === 'layout') this.viewer.exitLayout();
      this._renderStage();
      if (next.stage === 'layout') this._enterLayout();
    } else if (next.rating !== prev.rating) {
      this._renderRate();
    }
    if (next.stage === 'layout' && prev.stage === 'layout' && next.layout !== prev.layout) {
      if (action.type !== 'layout-change') this.viewer.setLayout(next.layout); // the viewer moved it itself
      this._updateOverlap();
    }
    // The pair on screen changed, or the orbit views come back (not from flag: nothing changed there).
    const pairChanged = next.tournament !== prev.tournament || next.ranking !== prev.ranking || next.large !== prev.large;
    const back = next.stage !== prev.stage && prev.stage !== 'flag' && prev.stage !== 'loading';
    if (VIEWING.has(next.stage) && (pairChanged || back)) this._showPair();
  }

  async _showPair() {
    const s = this.session.current;
    await Promise.all(this._pair().map((id) => this._ensureLoaded(id)));
    if (this.session.current === s) this._refresh();
  }

  _renderStage() {
    const { stage } = this.state;
    this.root.dataset.stage = stage;
    $(this.root, '.wb-rate').hidden = stage !== 'rate' && stage !== 'layout';
    $(this.root, '.wb-layout').hidden = stage !== 'layout';
    $(this.root, '.wb-orbit').hidden = stage === 'layout';
    this._renderRate();
    this._renderKeys();
  }

  _renderKeys() {
    const labels = this.state.item?.quality_scale?.labels;
    const items = bindingsFor(this.state.stage, { ratingLabels: labels });
    $(this.root, '.wb-keys').innerHTML = items
      .map((b) => `<span class="key">${b.keys.map((k) => `<kbd>${esc(keyLabel(k))}</kbd>`).join('/')} ${esc(b.label)}</span>`)
      .join('');
  }

  _renderRate() {
    const el = $(this.root, '.wb-rate');
    const st = this.state;
    if (!st.item || el.hidden) return;
    const q = st.item.quality_scale ?? { min: 1, max: 5, threshold: 3, labels: {} };
    const buttons = [];
    for (let n = q.min; n <= q.max; n++) {
      buttons.push(`<span class="rating${st.rating === n ? ' chosen' : ''}${n < q.threshold ? ' below' : ''}"><kbd>${n}</kbd> ${esc(q.labels?.[n] ?? '')}</span>`);
    }
    const next = st.rating == null ? 'Rate the winner with a digit.'
      : (st.stage === 'rate' && st.item.layout_stage ? 'Enter: adjust its layout.' : 'Enter: submit.');
    el.innerHTML = `<strong>Quality of the winner</strong> ${buttons.join('')}
      <span class="muted">below ${q.threshold}: no acceptable candidate (hard case). ${next}</span>`;
  }

  _onKey(ev) {
    if (ev.target.closest?.('input, textarea, select')) return;
    const action = actionFor(ev, this.state.stage);
    if (!action) return;
    ev.preventDefault();
    if (action === 'retry') { this.advance(); return; }
    this.perform(action);
  }

  /** Run one action by name (what the keys and the on-screen buttons do). */
  perform(action) {
    if (!this.session.current) return;
    switch (action) {
      case 'turntable': this.viewer.setTurntable(!this.viewer.turntable); this._updateModes(); return;
      case 'cycle-mode': this.setMode(nextMode(this.mode, this.session.current.item.candidates)); return;
      case 'overlay': this.overlay = !this.overlay; this._refresh(); return;
      case 'skip': this._skip(); return;
      case 'mode-translate': case 'mode-rotate': case 'mode-scale':
        if (this.state.stage === 'layout') this.viewer.setLayoutMode(action.slice(5));
        return;
      default: break;
    }
    if (action.startsWith('flag-')) { this._flag(action.slice(5)); return; }
    if (action.startsWith('show-')) { this.setMode(action.slice(5)); return; }
    this.dispatch({ type: action });
  }

  /**
   * Draw both candidates of the comparison (and the strip's others, in the background) in view mode
   * `mode` (representation.js): what each is drawn as is loaded first, the views redrawn when it is.
   */
  async setMode(mode) {
    const s = this.session.current;
    this.mode = this.viewer.setMode(mode);
    this._updateModes();
    if (!s || !VIEWING.has(this.state.stage)) return;
    await this._showPair();
    for (const c of s.item.candidates) { if (this.session.current === s && this.mode === mode) await this._ensureLoaded(c.id); }
  }

  // ---------------- layout stage ----------------
  _enterLayout() {
    const s = this.session.current;
    const st = this.state;
    const id = winnerOf(st);
    this.viewer.enterLayout({
      id, as: this._drawn(id).as ?? 'mesh', K: this.view.K, width: s.item.image.width, height: s.item.image.height, layout: st.layout,
      background: this.photo.photoCanvas(), cloud: s.cloud, el: $(this.root, '.wb-layout-view'),
    });
    this._updateOverlap();
  }

  _updateOverlap() {
    if (this._overlapQueued) return;
    this._overlapQueued = true;
    requestAnimationFrame(() => {
      this._overlapQueued = false;
      const s = this.session.current;
      const st = this.state;
      if (!s || st.item !== s.item || st.stage !== 'layout' || !s.mask) return;
      const id = winnerOf(st);
      const g = this.viewer.geometry(id, this._drawn(id).as ?? 'mesh');
      const o = layoutOverlap({ ...g, layout: st.layout, K: this.view.K, width: s.item.image.width, height: s.item.image.height, mask: s.mask });
      this.view.overlap = o;
      $(this.root, '.wb-overlap b').textContent = `${(100 * o).toFixed(1)}% IoU`;
    });
  }

  // ---------------- submit, skip, flag ----------------
  _submit(judgement) {
    this.submittedAt = performance.now();
    this.session.submit(judgement); // retried with the same key until the server answers
    this._updateCounter();
    this.advance();
  }

  async _skip() {
    try { await this.session.skip(); } catch (err) { this._error(err, 'Could not skip.'); return; }
    this.advance();
  }

  async _flag(reason) {
    const { item } = this.session.current;
    try {
      await this.session.flag(reason);
    } catch (err) {
      this.dispatch({ type: 'cancel' }); // back to where the flag started
      this._error(err, 'Could not flag.');
      return;
    }
    this._message(`Item ${item.id} flagged (${reason.replace('_', ' ')}).`, 'info');
    this.advance();
  }

  _onOutbox(outcomes) {
    for (const { entry, error } of outcomes) {
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

  _onLease(what) {
    if (what === 'lost') {
      this._message('Your lease on this item expired and it went back to the queue; another annotator may have it. Press S for the next item.', 'error');
    } else {
      this._message('Connection lost: the lease could not be renewed. Keep working; it is retried.', 'warn');
    }
  }

  // ---------------- small views ----------------
  _buildStrip() {
    const s = this.session.current;
    $(this.root, '.wb-strip').innerHTML = s.item.candidates.map((c, i) => `
      <figure data-id="${c.id}"><img src="${esc(c.preview_url)}" alt="candidate ${i + 1}" loading="eager" decoding="async">
      <figcaption>#${i + 1} · ${describe(c, drawnAs(this.mode, c).as, null, true)}</figcaption></figure>`).join('');
  }

  _updateStrip() {
    const s = this.state;
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
    const s = this.state;
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
    const { done, pending } = this.session;
    el.querySelector('b').textContent = String(done);
    el.querySelector('.pending').textContent = pending ? ` (${pending} saving…)` : '';
    this.root.dataset.done = String(done);
  }

  _updateModes() {
    const judged = this.state.item?.judged_representation;
    const keys = { textured: 'C', geometry: 'G', wireframe: 'W', normals: 'N', splat: 'P' };
    const modes = VIEW_MODES.map(({ mode }) => (mode === this.mode ? `<b>${esc(modeLabel(mode))}</b>` : esc(mode)) + ` <kbd>${keys[mode]}</kbd>`);
    $(this.root, '.wb-modes').innerHTML = `view: ${modes.join(' ')}${judged ? ` · judged: <b>${esc(judged)}</b>` : ''}`
      + ` · turntable ${this.viewer.turntable ? 'on' : 'off'} <kbd>Space</kbd> · overlay ${this.overlay ? 'on' : 'off'} <kbd>O</kbd>`;
    this.root.dataset.viewMode = this.mode;
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

/** "12k triangles · textured" or "300k Gaussians": what a candidate is drawn as, in words. */
function describe(c, as, stats, short = false) {
  if (as === 'splat') return `${fmtCount(c?.num_gaussians || stats?.gaussians || 0)} ${short ? 'gauss.' : 'Gaussians'}`;
  const tris = `${fmtCount(c?.num_faces || stats?.triangles || 0)} ${short ? 'tris' : 'triangles'}`;
  return capabilities(c).textured && !short ? `${tris} · textured` : tris;
}

function fmtCount(n) { return n >= 10000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n ?? 0); }
function esc(s) { return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]); }
