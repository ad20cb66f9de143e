// The snapshots pages (engine/console/snapshots.py): define one (POST .../snapshots/), follow its
// build (GET /api/v1/snapshots/<id>/ until done; the page then reloads with its card and files).
import { clearErrors, flash, installNavKeys, showErrors } from './common.js';
import { api, installKeys, poll } from './lead.js';

installNavKeys();

const form = document.getElementById('snapshot-define');
if (form) {
  const slug = form.dataset.slug;
  const f = form.elements;
  const pairingHelp = document.getElementById('pairing-help');
  const sync = () => {
    const dpo = f.kind.value === 'dpo';
    form.querySelectorAll('.dpo-only').forEach((node) => { node.hidden = !dpo; });
    pairingHelp.textContent = f.pairing.selectedOptions[0]?.title ?? '';
  };
  f.kind.addEventListener('change', sync); f.pairing.addEventListener('change', sync); sync();

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const rounds = [...form.querySelectorAll('input[name=rounds]:checked')].map((i) => Number(i.value));
    const filters = {
      overlap_agrees: f.overlap_agrees.checked, exclude_gold: f.exclude_gold.checked, exclude_rejected: f.exclude_rejected.checked,
      exclude_annotators: f.exclude_annotators.value.split(/[\s,]+/).filter(Boolean),
    };
    if (rounds.length) filters.rounds = rounds;
    if (f.min_rating.value.trim()) filters.min_rating = Number(f.min_rating.value);
    const body = { kind: f.kind.value, format: f.format.value, filters };
    if (f.kind.value === 'dpo') { body.pairing = f.pairing.value; body.keep_ties = f.keep_ties.checked; }
    if (f.assets.value) body.assets = f.assets.value;
    if (f.since.value) body.since = Number(f.since.value);
    if (f.license.value.trim()) body.license = f.license.value.trim();
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const snap = await api.request('POST', `projects/${encodeURIComponent(slug)}/snapshots/`, body);
      window.location.assign(`/console/projects/${encodeURIComponent(slug)}/snapshots/${snap.id}/`);
    } catch (err) { showErrors(form, err); flash(err.message, { error: true }); submit.disabled = false; }
  });
  installKeys({ b: () => form.requestSubmit() });
}

const build = document.getElementById('snapshot-build');
if (build) {
  const id = build.dataset.snapshot;
  const bar = document.getElementById('snapshot-progress');
  const text = document.getElementById('snapshot-progress-text');
  if (build.dataset.state === 'pending' || build.dataset.state === 'building') {
    poll(async () => {
      const s = await api.request('GET', `snapshots/${id}/`);
      const p = s.progress;
      bar.value = p.fraction;
      text.textContent = `${p.items_done} / ${p.items_total} items · ${p.rows_done} rows · ${s.state}`;
      document.getElementById('snapshot-state').textContent = s.state;
      if (s.state === 'done' || s.state === 'failed') { window.location.reload(); return false; }
      return true;
    }, 1000);
  }
  document.getElementById('snapshot-rebuild')?.addEventListener('click', async (ev) => {
    ev.currentTarget.disabled = true;
    try { await api.request('POST', `snapshots/${id}/build/`, {}); window.location.reload(); } catch (err) { flash(err.message, { error: true }); }
  });
}
