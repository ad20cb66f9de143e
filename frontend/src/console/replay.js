// Replay of one judgement (engine/console/review.py): the workbench's own modules draw it: session.js
// downloads what the item needs exactly as the workbench does, viewer.js draws the candidates (one
// WebGL renderer, scissored views, the layout over the photo), photo.js the photo, mask and crops.
// Steps: each comparison in order with its outcome and time, then the winner and its rating, then
// the layout. Reject / restore and gold go through the annotation API.
import { flash, installNavKeys } from './common.js';
import { api, el, installKeys } from './lead.js';
import { PhotoPanel } from '../photo.js';
import { intrinsicsFor } from '../projection.js';
import { prepare } from '../session.js';
import * as viewerModule from '../viewer.js';

installNavKeys();

const root = document.getElementById('replay');
const judgementId = Number(root.dataset.judgement);
const $ = (id) => document.getElementById(id);
const OUTCOME = { left: 'left better', right: 'right better', equal: 'equal' };

const state = { data: null, prepared: null, steps: [], current: -1, K: null };
const photo = new PhotoPanel({ full: $('replay-photo'), crops: [$('replay-crop-left'), $('replay-crop-right')] });
const stage = $('replay-stage');
const viewer = viewerModule.setup(stage);
window.replay = { state, viewer }; // for the browser test and for poking at it in the console

function label(id) {
  const c = state.data.item.candidates.find((x) => x.id === id);
  const n = state.data.item.candidates.indexOf(c) + 1;
  return `#${n} · candidate ${id}${c?.checkpoint ? ` · ${c.checkpoint}` : ''}`;
}

function buildSteps() {
  const j = state.data.judgement;
  const steps = j.comparisons.map((c, i) => ({ kind: 'comparison', index: i, comparison: c, title: `${i + 1}` }));
  steps.push({ kind: 'winner', title: 'winner' });
  steps.push({ kind: 'layout', title: 'layout' });
  state.steps = steps;
  $('replay-steps').replaceChildren(...steps.map((s, i) => el('button', {
    type: 'button', role: 'tab', 'data-step': i, text: s.kind === 'comparison' ? `comparison ${s.title}` : s.title,
    onclick: () => go(i),
  })));
}

async function ensureLoaded(ids) {
  await Promise.all(ids.map(async (id) => {
    if (viewer.has(id)) return;
    const buf = await state.prepared.glbs.get(id);
    await viewer.load(id, buf.slice(0));
  }));
}

function setTags(left, right, classes = ['', '']) {
  for (const [side, text, cls] of [['left', left, classes[0]], ['right', right, classes[1]]]) {
    $(`tag-${side}`).textContent = text ?? '';
    const view = stage.querySelector(`[data-view=${side}]`);
    view.classList.toggle('won', cls === 'won');
    view.classList.toggle('lost', cls === 'lost');
  }
}

function drawCrops(ids) {
  ids.forEach((id, side) => {
    const c = state.data.item.candidates.find((x) => x.id === id);
    photo.drawCrop(side, viewer.geometry(id), c?.layout);
  });
  if (ids.length < 2) photo.clearCrop(1);
}

async function go(i) {
  if (!state.data || i < 0 || i >= state.steps.length) return;
  state.current = i;
  const s = state.steps[i];
  const j = state.data.judgement;
  [...$('replay-steps').children].forEach((b, k) => { b.classList.toggle('current', k === i); b.setAttribute('aria-selected', String(k === i)); });
  viewer.exitLayout();
  const views = $('replay-views');
  root.dataset.step = s.kind === 'comparison' ? `comparison-${s.index + 1}` : s.kind;
  if (s.kind === 'comparison') {
    const c = s.comparison;
    views.classList.remove('single');
    await ensureLoaded([c.left, c.right]);
    viewer.show([c.left, c.right], { reframe: true });
    const cls = c.outcome === 'left' ? ['won', 'lost'] : c.outcome === 'right' ? ['lost', 'won'] : ['', ''];
    setTags(`left ${label(c.left)}`, `right ${label(c.right)}`, cls);
    drawCrops([c.left, c.right]);
    $('replay-caption').textContent = `Comparison ${s.index + 1} of ${j.comparisons.length}: ${OUTCOME[c.outcome] ?? c.outcome}`
      + (c.decided_ms != null ? `, decided in ${(c.decided_ms / 1000).toFixed(1)} s.` : '.');
  } else if (s.kind === 'winner') {
    views.classList.add('single');
    await ensureLoaded([j.winner]);
    viewer.show([j.winner], { reframe: true });
    setTags(`winner ${label(j.winner)}`, '', ['won', '']);
    drawCrops([j.winner]);
    const scale = state.data.item.quality_scale;
    $('replay-caption').textContent = `Winner ${label(j.winner)}, rated ${j.rating} (${scale.labels[String(j.rating)] ?? ''})`
      + (j.below_threshold ? `: below alpha ${scale.threshold}, a hard case.` : `; alpha is ${scale.threshold}.`);
  } else {
    await ensureLoaded([j.winner]);
    const { item } = state.data;
    const c = item.candidates.find((x) => x.id === j.winner);
    const layout = j.layout || j.model_layout || c.layout;
    viewer.enterLayout({ id: j.winner, K: state.K, width: item.image.width, height: item.image.height, layout,
      background: photo.photoCanvas(), cloud: state.prepared.cloud, el: $('replay-layout-el') });
    $('replay-caption').textContent = j.layout
      ? 'The winner at the layout the annotator set, over the photo (drag to check it from the camera).'
      : 'The winner at the layout the model proposed (the annotator did not adjust it).';
  }
}

function renderDecision() {
  const { judgement: j, item } = state.data;
  $('judgement-status').textContent = j.status;
  $('judgement-status').className = `state ${j.status === 'accepted' ? 'done' : j.status === 'rejected' ? 'failed' : ''}`;
  $('judgement-summary').textContent = `by ${j.annotator} · item ${item.id} · ${j.protocol} · ${new Date(j.created_at).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  const rows = j.comparisons.map((c, i) => el('tr', { 'data-step': i },
    el('td', { text: String(c.index) }), el('td', { text: label(c.left) }), el('td', { text: label(c.right) }),
    el('td', { class: c.outcome === 'equal' ? 'muted' : '', text: OUTCOME[c.outcome] ?? c.outcome }),
    el('td', { class: 'n', text: c.decided_ms != null ? `${(c.decided_ms / 1000).toFixed(1)} s` : '–' })));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'empty', text: j.ranking ? `Full ranking: ${j.ranking.map((g) => g.join(' = ')).join(' > ')}` : 'No comparisons.' })));
  $('replay-comparisons').replaceChildren($('replay-comparisons').rows[0], ...rows);
  const scale = item.quality_scale;
  $('replay-decision').replaceChildren(
    el('p', {}, 'Winner ', el('strong', { text: label(j.winner) }), `, rated ${j.rating} (${scale.labels[String(j.rating)] ?? ''})`,
      j.below_threshold ? el('span', { class: 'bad', text: ` below alpha ${scale.threshold}` }) : ''),
    el('p', { class: 'muted', text: `${(j.time_spent_ms / 1000).toFixed(1)} s on the item · layout ${j.layout ? 'adjusted by the annotator' : 'as the model proposed'}`
      + (item.is_gold ? ` · gold item, answer #${item.gold_candidate}` : '') + (j.review_reason ? ` · review: ${j.review_reason}` : '') }));
  $('replay-candidates').replaceChildren(...item.candidates.map((c, i) => el('figure', {
    class: [c.id === j.winner ? 'winner' : '', c.id === item.gold_candidate ? 'gold' : ''].join(' ').trim(),
    title: `Make the item gold with candidate ${c.id}`, 'data-candidate': c.id, onclick: () => setGold(c.id),
  }, el('img', { src: c.preview_url, alt: `candidate ${c.id}`, loading: 'lazy' }),
  el('figcaption', { text: `#${i + 1}${c.id === j.winner ? ' winner' : ''}${c.id === item.gold_candidate ? ' gold' : ''}` }))));
  $('replay-reject').hidden = j.status !== 'accepted';
  $('replay-reason').hidden = j.status !== 'accepted';
  $('replay-restore').hidden = j.status !== 'rejected';
  $('replay-ungold').hidden = !item.is_gold;
}

async function act(work, message) {
  $('replay-error').textContent = '';
  try {
    await work();
    state.data = await api.request('GET', `judgements/${judgementId}/replay`);
    renderDecision();
    flash(message);
  } catch (err) {
    $('replay-error').textContent = err.message;
  }
}

const reject = () => act(() => api.request('POST', `judgements/${judgementId}/reject`, { reason: $('replay-reason').value }),
  `Judgement ${judgementId} rejected: it leaves the exports and its item gets the slot back.`);
const restore = () => act(() => api.request('POST', `judgements/${judgementId}/restore`, {}),
  `Judgement ${judgementId} restored.`);
const setGold = (candidate) => act(() => api.request('POST', `items/${state.data.item.id}/gold`, { candidate }),
  candidate == null ? 'The item is an ordinary item again.' : `Item ${state.data.item.id} is gold; its answer is candidate ${candidate}.`);

$('replay-reject').addEventListener('click', reject);
$('replay-restore').addEventListener('click', restore);
$('replay-gold').addEventListener('click', () => setGold(state.data.judgement.winner));
$('replay-ungold').addEventListener('click', () => setGold(null));
installKeys({
  ArrowRight: () => go(state.current + 1), ArrowLeft: () => go(state.current - 1),
  Home: () => go(0), End: () => go(state.steps.length - 1),
  m: () => flash(`Shading: ${viewer.cycleMode()}`),
  x: () => { if (state.data?.judgement.status === 'accepted') reject(); },
  u: () => { if (state.data?.judgement.status === 'rejected') restore(); },
  g: () => setGold(state.data.judgement.winner),
});

async function main() {
  try {
    state.data = await api.request('GET', `judgements/${judgementId}/replay`);
    const { item } = state.data;
    state.K = intrinsicsFor(item.image);
    viewer.warmUp();
    state.prepared = await prepare(api, { item }, { all: true });
    photo.setItem({ bitmap: state.prepared.photo, width: item.image.width, height: item.image.height,
      mask: state.prepared.mask, bbox: item.mask.bbox, K: state.K });
    renderDecision();
    buildSteps();
    await go(0);
    root.dataset.ready = '1';
  } catch (err) {
    $('replay-caption').textContent = `The judgement could not be replayed: ${err.message}`;
  }
}
main();
