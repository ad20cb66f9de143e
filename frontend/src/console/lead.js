// What the lead's pages (rounds, review, snapshots, checkpoints) share beyond common.js: page keys,
// a poller that stops when nothing is running, id lists typed by hand, small formatting, SVG lines.
import { api, flash } from './common.js';
import './lead.css';

export { api };

const NOT_TYPED = new Set(['checkbox', 'radio', 'button', 'submit', 'reset', 'file', 'range', 'color']);

/** Whether a key pressed on `target` is typing (a text field, a select), not a command. */
function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.tagName === 'INPUT') return !NOT_TYPED.has(target.type);
  return target.isContentEditable || ['TEXTAREA', 'SELECT'].includes(target.tagName);
}

/** Page keys (outside fields): {key: action}. The navigation's own keys (common.js) stay. */
export function installKeys(bindings) {
  document.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
    const action = bindings[ev.key];
    if (action) { ev.preventDefault(); ev.stopPropagation(); action(ev); }
  }, { capture: true });
}

/** Call `tick` every `ms` while it returns true (something still running); errors are flashed once. */
export function poll(tick, ms = 2000) {
  let timer = null; let failed = false;
  async function run() {
    let again = false;
    try { again = await tick(); failed = false; } catch (err) {
      if (!failed) flash(`Could not refresh: ${err.message}`, { error: true });
      failed = true; again = true;
    }
    timer = again ? setTimeout(run, failed ? ms * 3 : ms) : null;
  }
  run();
  return { stop() { if (timer) clearTimeout(timer); timer = null; }, now() { if (timer) clearTimeout(timer); run(); } };
}

/** "3, 4, 10-12" -> [3, 4, 10, 11, 12]; throws with what is wrong. */
export function parseIds(text) {
  const out = [];
  for (const part of text.split(/[\s,;]+/).filter(Boolean)) {
    const m = part.match(/^(\d+)(?:-(\d+))?$/);
    if (!m) throw new Error(`"${part}" is not an id or a range like 10-12.`);
    const a = Number(m[1]); const b = m[2] ? Number(m[2]) : a;
    if (b < a || b - a > 100000) throw new Error(`"${part}" is not a range from a smaller id to a larger one.`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0; let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null) node.append(c);
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** A line chart of series [{name, colour, points: [[x, y], ...]}] as an SVG element. */
export function lineChart(series, { width = 520, height = 180, xLabel = 'step', yLabel = 'loss' } = {}) {
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'line-chart', role: 'img', 'aria-label': `${yLabel} by ${xLabel}` });
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    const t = svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'muted' });
    t.textContent = 'no points yet'; root.append(t); return root;
  }
  const pad = { l: 46, r: 10, t: 24, b: 24 }; // the legend in the top margin
  const xs = pts.map((p) => p[0]); const ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs); const x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys); let y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + (x - x0) / (x1 - x0) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - (y - y0) / (y1 - y0) * (height - pad.t - pad.b);
  root.append(svg('line', { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: 'axis' }));
  root.append(svg('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, class: 'axis' }));
  const label = (v) => (v === 0 || Math.abs(v) >= 0.01 ? v.toPrecision(3) : v.toExponential(1));
  for (const [v, y] of [[y1, Y(y1)], [y0, Y(y0)], [(y0 + y1) / 2, Y((y0 + y1) / 2)]]) {
    const t = svg('text', { x: pad.l - 4, y: y + 4, 'text-anchor': 'end', class: 'tick' });
    t.textContent = label(v); root.append(t);
  }
  for (const v of [x0, x1]) {
    const t = svg('text', { x: X(v), y: height - 6, 'text-anchor': v === x0 ? 'start' : 'end', class: 'tick' });
    t.textContent = `${xLabel} ${v}`; root.append(t);
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    root.append(svg('polyline', { points: s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' '),
      fill: 'none', stroke: s.colour, 'stroke-width': 2 }));
    const t = svg('text', { x: pad.l + 110 * i, y: 14, 'text-anchor': 'start', fill: s.colour, class: 'series' });
    t.textContent = s.name; root.append(t);
  });
  return root;
}
