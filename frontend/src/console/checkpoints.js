// The checkpoints page (engine/console/checkpoints.py): the project's mix (PUT .../checkpoints/), a
// checkpoint's upload (multipart POST /api/v1/checkpoints/, with its progress), a training run
// (POST .../training-runs/) and the runs' live progress and loss curves.
import { clearErrors, flash, installNavKeys, showErrors } from './common.js';
import { ApiError } from '../api.js';
import { api, el, installKeys, lineChart, poll } from './lead.js';

installNavKeys();
const COLOURS = { sft: '#3b5bdb', dpo: '#e8590c' };

const mixForm = document.getElementById('mix-form');
const slug = mixForm.dataset.slug;

function mixEntries() {
  return [...mixForm.querySelectorAll('tr[data-checkpoint]')]
    .filter((tr) => tr.querySelector('.mix-use').checked)
    .map((tr) => ({ checkpoint: Number(tr.dataset.checkpoint), share: Number(tr.querySelector('.mix-share').value) }));
}

async function putMix(mix) {
  return api.request('PUT', `projects/${encodeURIComponent(slug)}/checkpoints/`, { mix });
}

mixForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors(mixForm);
  const mix = mixEntries();
  if (!mix.length) { showErrors(mixForm, new ApiError('invalid', 'Tick at least one checkpoint: a project generates with its mix.')); return; }
  try {
    const out = await putMix(mix);
    window.location.assign(`${window.location.pathname}?mix=${out.mix.map((m) => m.checkpoint).join(',')}`);
  } catch (err) { showErrors(mixForm, err); flash(err.message, { error: true }); }
});
installKeys({ m: () => mixForm.requestSubmit() });
const params = new URLSearchParams(window.location.search);
if (params.has('mix')) flash(`Mix saved: checkpoints ${params.get('mix').split(',').map((c) => `#${c}`).join(', ')} generate from now on.`);
if (params.has('uploaded')) flash(`Checkpoint #${params.get('uploaded')} registered.`);

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

/** Multipart POST with upload progress (fetch has none); resolves with the JSON, rejects with ApiError. */
function upload(url, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        const e = data?.error ?? {};
        reject(new ApiError(xhr.status >= 500 ? 'server' : 'invalid', e.message || `Upload failed (HTTP ${xhr.status}).`,
          { status: xhr.status, code: e.code ?? '', details: e.details ?? null }));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError('network', 'The upload could not reach the server; try again.')));
    xhr.send(form);
  });
}

const uploadForm = document.getElementById('checkpoint-upload');
uploadForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors(uploadForm);
  const f = uploadForm.elements;
  const body = new FormData();
  for (const name of ['name', 'version', 'backend', 'config', 'evaluation']) body.append(name, f[name].value.trim());
  body.append('project', slug);
  if (f.parent.value) body.append('parent', f.parent.value);
  if (f.file.files[0]) body.append('file', f.file.files[0]);
  const bar = document.getElementById('checkpoint-upload-progress');
  const submit = uploadForm.querySelector('button[type=submit]');
  submit.disabled = true; bar.hidden = false; bar.value = 0;
  try {
    const checkpoint = await upload('/api/v1/checkpoints/', body, (x) => { bar.value = x; });
    if (f.add_to_mix.checked) {
      const share = Number(f.mix_share.value);
      const old = mixEntries().filter((m) => m.checkpoint !== checkpoint.id);
      const total = old.reduce((a, m) => a + m.share, 0);
      const mix = [{ checkpoint: checkpoint.id, share }, ...old.map((m) => ({ checkpoint: m.checkpoint, share: total ? (1 - share) * m.share / total : 0 }))]
        .filter((m) => m.share > 0);
      await putMix(mix);
    }
    window.location.assign(`${window.location.pathname}?uploaded=${checkpoint.id}#checkpoint-${checkpoint.id}`);
  } catch (err) {
    showErrors(uploadForm, err); flash(err.message, { error: true });
  } finally { submit.disabled = false; }
});

const trainForm = document.getElementById('training-start');
trainForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors(trainForm);
  const f = trainForm.elements;
  let hyperparameters;
  try { hyperparameters = JSON.parse(f.hyperparameters.value || '{}'); } catch {
    showErrors(trainForm, new ApiError('invalid', 'Not JSON.', { details: { hyperparameters: ['Not valid JSON: write an object like {"sft_steps": 200}.'] } }));
    return;
  }
  const body = { stage: f.stage.value, hyperparameters };
  if (f.round.value) body.round = Number(f.round.value);
  if (f.parent.value) body.parent = Number(f.parent.value);
  try {
    const run = await api.request('POST', `projects/${encodeURIComponent(slug)}/training-runs/`, body);
    flash(`Training run #${run.id} queued on the model workers.`);
    runsPoller.now();
  } catch (err) { showErrors(trainForm, err); flash(err.message, { error: true }); }
});

// ---- training runs: progress and loss curves, live ----
const runsBox = document.getElementById('training-runs');
const curves = JSON.parse(document.getElementById('run-curves').textContent);

function drawCurves(node, stages) {
  const series = Object.entries(stages || {}).map(([stage, points]) => ({ name: `${stage} loss`, colour: COLOURS[stage] ?? '#495057', points }));
  node.querySelector('.loss-chart').replaceChildren(series.length ? lineChart(series) : el('span', { class: 'muted', text: 'no loss recorded yet' }));
}
runsBox.querySelectorAll('[data-run]').forEach((node) => drawCurves(node, curves[node.dataset.run]));

function runNode(run) {
  const p = run.progress || {};
  const node = el('div', { class: 'job', 'data-run': run.id, 'data-state': run.state },
    el('div', { class: 'head' }, el('strong', { text: `Run #${run.id}` }), el('span', { class: `state ${run.state}`, text: run.state }),
      el('span', { class: 'muted', text: `${run.stage}${run.round ? ` · round ${run.round}` : ''} · from #${run.parent ?? '–'}${run.checkpoint ? ` → #${run.checkpoint}` : ''}` })),
    el('div', { class: 'progress-line' }, el('progress', { max: 1, value: p.fraction ?? 0 }),
      el('span', { class: 'run-progress', text: p.step ? `${p.stage} step ${p.step} / ${p.steps}` : '–' })),
    run.error ? el('p', { class: 'bad', text: run.error }) : null,
    el('div', { class: 'loss-chart' }));
  const losses = Object.fromEntries(Object.entries(p.losses || {}).map(([s, pts]) => [s, pts.map((q) => [q.step, q.loss])]));
  drawCurves(node, Object.keys(losses).length ? losses : curves[String(run.id)]);
  return node;
}

const live = () => [...runsBox.querySelectorAll('[data-run]')].some((n) => ['pending', 'running'].includes(n.dataset.state));
let first = true;
const runsPoller = poll(async () => {
  if (first && !live()) { first = false; return false; } // nothing to follow: the server-rendered list stands
  first = false;
  const runs = await api.request('GET', `projects/${encodeURIComponent(slug)}/training-runs/`);
  runsBox.replaceChildren(...(runs.length ? runs.map(runNode) : [el('p', { class: 'empty', text: 'No training runs yet.' })]));
  const again = live();
  document.getElementById('runs-live').textContent = again ? 'live: refreshed every 2 s' : 'no run in progress';
  if (!again && runs.some((r) => r.state === 'done')) flash('A training run finished: its checkpoint is in the registry above (reload to see it).');
  return again;
}, 2000);
