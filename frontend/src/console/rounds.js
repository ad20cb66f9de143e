// The rounds pages (engine/console/rounds.py): open a round (POST .../rounds/), follow its generation
// jobs live (GET .../generation-jobs/?round=), retry failed items (POST .../retry), send hard cases back for
// recovery (POST .../recover), close the round.
import { clearErrors, flash, installNavKeys, showErrors } from './common.js';
import { api, duration, el, installKeys, parseIds, poll } from './lead.js';

installNavKeys();

const openForm = document.getElementById('round-open');
if (openForm) {
  const slug = openForm.dataset.slug;
  const submit = openForm.querySelector('button[type=submit]');
  openForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(openForm);
    const f = openForm.elements;
    const body = {
      quality_threshold: Number(f.quality_threshold.value), candidates_per_item: Number(f.candidates_per_item.value),
      steps: Number(f.steps.value),
    };
    const selection = openForm.querySelector('input[name=selection]:checked').value;
    try {
      if (selection === 'images') body.image_ids = parseIds(f.image_ids.value);
      if (selection === 'masks') body.mask_ids = parseIds(f.mask_ids.value);
      if ((selection === 'images' && !body.image_ids.length) || (selection === 'masks' && !body.mask_ids.length)) {
        throw new Error('Type at least one id.');
      }
    } catch (err) {
      showErrors(openForm, { message: err.message, details: { [selection === 'images' ? 'image_ids' : 'mask_ids']: [err.message] } });
      return;
    }
    const mix = [...openForm.querySelectorAll('#round-mix tr[data-checkpoint]')]
      .filter((tr) => tr.querySelector('.mix-use').checked)
      .map((tr) => ({ checkpoint: Number(tr.dataset.checkpoint), share: Number(tr.querySelector('.mix-share').value) }));
    if (mix.length) body.mix = mix;
    submit.disabled = true;
    try {
      const round = await api.request('POST', `projects/${encodeURIComponent(slug)}/rounds/`, body);
      window.location.assign(`/console/projects/${encodeURIComponent(slug)}/rounds/${round.index}/?opened=1`);
    } catch (err) {
      showErrors(openForm, err); flash(err.message, { error: true });
    } finally { submit.disabled = false; }
  });
  installKeys({ o: () => openForm.requestSubmit() });
}

// ---- one round: its generation jobs, live ----
const generation = document.getElementById('generation');
if (generation) {
  const { slug, round } = generation.dataset;
  const isLead = generation.dataset.lead === '1';
  const box = document.getElementById('generation-jobs');
  const base = `projects/${encodeURIComponent(slug)}/generation-jobs/`;
  if (new URLSearchParams(window.location.search).has('opened')) flash(`Round ${round} is open; its candidates are being generated.`);

  function jobNode(job, failures) {
    const p = job.progress;
    const running = job.state === 'running';
    const node = el('div', { class: 'job', id: `job-${job.id}`, 'data-state': job.state },
      el('div', { class: 'head' },
        el('strong', { text: `Job #${job.id}` }),
        el('span', { class: `state ${running ? 'running' : (p.items_failed ? 'failed' : 'done')}`, text: job.state }),
        el('span', { class: 'muted', text: `${job.candidates_per_item} candidates per object · ${job.steps} steps · mix ${job.mix.map((m) => `#${m.checkpoint} ${(m.share * 100).toFixed(0)}%`).join(', ')}` })),
      el('div', { class: 'progress-line' },
        el('progress', { max: p.total || 1, value: p.done, 'aria-label': `job ${job.id} progress` }),
        el('span', { class: 'fraction', text: `${Math.round(p.fraction * 100)}%` })),
      el('div', { class: 'figures' },
        el('span', {}, 'candidates ', el('b', { class: 'done', text: `${p.done} / ${p.total}` })),
        el('span', {}, 'objects done ', el('b', { text: `${p.items_done} / ${p.items_total}` })),
        el('span', {}, 'failed ', el('b', { class: p.items_failed ? 'bad failed-count' : 'failed-count', text: String(p.items_failed) })),
        el('span', {}, 'rate ', el('b', { text: `${p.candidates_per_s.toFixed(2)} candidates/s` })),
        el('span', {}, running ? 'time left ' : 'took ', el('b', { class: 'eta', text: running ? duration(p.eta_s) : duration(p.elapsed_s) }))));
    if (failures?.length) {
      const failed = failures.filter((f) => f.state === 'failed');
      node.append(el('table', { class: 'failures' },
        el('tr', {}, el('th', { text: 'item' }), el('th', { text: 'attempts' }), el('th', { text: 'reason' })),
        failures.map((f) => el('tr', {}, el('td', { text: `#${f.item_id}` }), el('td', { class: 'n', text: String(f.attempts) }),
          el('td', { class: 'reason', text: f.error })))));
      if (isLead && failed.length) {
        node.append(el('p', {}, el('button', {
          type: 'button', class: 'secondary retry', 'data-job': job.id, text: `Retry ${failed.length} failed item${failed.length > 1 ? 's' : ''}`,
          onclick: (ev) => retry(job.id, ev.currentTarget),
        })));
      }
    }
    return node;
  }

  async function retry(jobId, button) {
    button.disabled = true;
    try {
      const job = await api.request('POST', `${base}${jobId}/retry`, {});
      flash(`Retrying in job #${job.id}.`);
      poller.now();
    } catch (err) { flash(err.message, { error: true }); button.disabled = false; }
  }

  async function tick() {
    const page = await api.request('GET', `${base}?round=${round}&page_size=20`);
    const jobs = page.results;
    const nodes = await Promise.all(jobs.map(async (job) => {
      const failures = job.progress.items_failed || job.state === 'finished'
        ? (await api.request('GET', `${base}${job.id}/`)).failures : [];
      return jobNode(job, failures);
    }));
    box.replaceChildren(...(nodes.length ? nodes : [el('p', { class: 'empty', text: 'No generation job in this round.' })]));
    const live = jobs.some((j) => j.state === 'running');
    generation.dataset.live = live ? '1' : '0';
    document.getElementById('generation-live').textContent = live ? 'live: refreshed every 2 s while a job runs' : 'every job has finished';
    return live;
  }
  const poller = poll(tick, 2000);
}

const recoveryForm = document.getElementById('recovery-form');
if (recoveryForm) {
  const { slug, round } = recoveryForm.dataset;
  const submit = recoveryForm.querySelector('button[type=submit]');
  recoveryForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(recoveryForm);
    const f = recoveryForm.elements;
    submit.disabled = true;
    try {
      const job = await api.request('POST', `projects/${encodeURIComponent(slug)}/rounds/${round}/recover`, {
        ranker: Number(f.ranker.value), generate: Number(f.generate.value), shown: Number(f.shown.value),
        random: Number(f.random.value),
      });
      window.location.assign(`/console/projects/${encodeURIComponent(slug)}/rounds/${round}/?recovering=${job.id}`);
    } catch (err) { showErrors(recoveryForm, err); flash(err.message, { error: true }); submit.disabled = false; }
  });
}
const recovering = new URLSearchParams(window.location.search).get('recovering');
if (recovering) flash(`Job #${recovering} generates the hard cases' new seeds; each comes back to annotators as a recovery item.`);

const closeForm = document.getElementById('round-close');
if (closeForm) {
  const { slug, round } = closeForm.dataset;
  const submit = closeForm.querySelector('button[type=submit]');
  closeForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      await api.request('POST', `projects/${encodeURIComponent(slug)}/rounds/${round}/close`,
        { pairing: closeForm.elements.pairing.value, export: closeForm.elements.export.checked });
      window.location.assign(`/console/projects/${encodeURIComponent(slug)}/rounds/${round}/?closed=1`);
    } catch (err) { showErrors(closeForm, err); flash(err.message, { error: true }); submit.disabled = false; }
  });
  installKeys({ x: () => submit.focus() });
}
if (new URLSearchParams(window.location.search).has('closed')) flash('Round closed; its snapshots are being built (follow them under Snapshots).');
