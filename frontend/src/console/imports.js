// The import page (engine/console/imports.py, docs/console.md): files dropped or chosen are
// uploaded in chunks (each a short PUT naming its offset, resumed after a lost connection or a
// reload), then the import runs as a job on the workers; the page follows it and shows its report.
import { api, flash, installNavKeys } from './common.js';

installNavKeys();

const panel = document.getElementById('import-panel');
const slug = panel.dataset.slug;
const CHUNK = Number(panel.dataset.chunkBytes) || 8 * 1024 * 1024;
const base = `projects/${encodeURIComponent(slug)}/`;
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- collecting the files
/** Every file under a dropped entry, with its path relative to what was dropped. */
async function entryFiles(entry, prefix = '') {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + file.name }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) { // readEntries answers in pages of 100
    const page = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!page.length) break;
    children.push(...page);
  }
  const nested = await Promise.all(children.map((c) => entryFiles(c, `${prefix}${entry.name}/`)));
  return nested.flat();
}

/** One dropped folder: its own name is dropped from the paths (its layout is what matters). */
function stripCommonFolder(items) {
  const first = items[0]?.path.split('/');
  if (!first || first.length < 2) return items;
  const top = first[0];
  if (!items.every((i) => i.path.startsWith(`${top}/`))) return items;
  return items.map((i) => ({ ...i, path: i.path.slice(top.length + 1) }));
}

const IGNORED = /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini|__MACOSX\/.*|\.[^/]*)$/;

function fromFileList(list) {
  return [...list].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

// ---------------------------------------------------------------- one chunk
function putChunk(uploadId, index, blob, start, size, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/api/v1/${base}uploads/${uploadId}/files/${index}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('X-CSRFToken', document.querySelector('meta[name="csrf-token"]')?.content
      || (document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/)?.[1] ?? ''));
    if (blob.size) xhr.setRequestHeader('Content-Range', `bytes ${start}-${start + blob.size - 1}/${size}`);
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => resolve({ status: 0, body: null });
    xhr.send(blob);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function human(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes; let u = -1;
  do { v /= 1024; u += 1; } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

function duration(s) {
  if (!Number.isFinite(s)) return '';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// ---------------------------------------------------------------- the upload
let cancelled = false;
let currentUpload = null;

function signature(items) {
  return `upload:${slug}:` + items.map((i) => `${i.path}:${i.file.size}:${i.file.lastModified}`).join('|');
}

async function uploadAll(items) {
  const box = $('upload');
  const bar = $('upload-progress');
  const status = $('upload-status');
  const error = $('upload-error');
  box.hidden = false; error.textContent = ''; cancelled = false;
  $('upload-cancel').hidden = false;
  const total = items.reduce((n, i) => n + i.file.size, 0);
  $('upload-name').textContent = items.length === 1 ? items[0].path : `${items.length} files, ${human(total)}`;
  bar.max = Math.max(total, 1); bar.value = 0;
  status.textContent = 'Starting…';

  // Resume an unfinished upload of the same files (a reload, a closed tab).
  const key = signature(items);
  let upload = null;
  const saved = localStorage.getItem(key);
  if (saved) {
    try {
      upload = await api.request('GET', `${base}uploads/${saved}/`);
      if (upload.state !== 'receiving') upload = null;
    } catch { upload = null; }
  }
  if (!upload) {
    upload = await api.request('POST', `${base}uploads/`, {
      files: items.map((i) => ({ path: i.path, size: i.file.size })), format: $('import-format').value,
    });
    try { localStorage.setItem(key, String(upload.id)); } catch { /* private mode: no resume after a reload */ }
  } else {
    flash(`Resuming the upload of these files (upload #${upload.id}).`);
  }
  currentUpload = upload;
  const chunk = Math.min(CHUNK, upload.chunk_bytes || CHUNK);
  const byPath = new Map(items.map((i) => [i.path, i.file]));
  let sent = upload.files.reduce((n, f) => n + f.received, 0);
  const t0 = performance.now(); const sent0 = sent;
  const show = (extra = 0) => {
    const now = sent + extra;
    bar.value = now;
    const rate = (now - sent0) / Math.max((performance.now() - t0) / 1000, 0.001);
    const left = rate > 0 ? (total - now) / rate : Infinity;
    status.textContent = `${human(now)} of ${human(total)} · ${Math.floor((100 * now) / Math.max(total, 1))}%`
      + (now > sent0 ? ` · ${human(rate)}/s · ${duration(left)} left` : '');
  };
  show();
  for (const f of upload.files) {
    const file = byPath.get(f.path);
    let offset = f.received;
    let failures = 0;
    while (offset < f.size) { // an empty file needs no chunk
      if (cancelled) throw new Error('cancelled');
      const blob = file.slice(offset, Math.min(offset + chunk, f.size));
      const answer = await putChunk(upload.id, f.index, blob, offset, f.size, (loaded) => show(loaded));
      if (answer.status === 200) {
        sent += answer.body.received - offset; offset = answer.body.received; failures = 0;
        show();
      } else if (answer.status === 409 && answer.body?.error?.code === 'offset_mismatch') {
        const expected = answer.body.error.details.expected_offset;
        sent += expected - offset; offset = expected; // the server has more (an answer was lost) or less
      } else if (answer.status === 0 || answer.status >= 500 || answer.status === 429) {
        failures += 1;
        if (failures > 8) throw new Error('The server stopped answering. Drop the same files again to resume where it stopped.');
        const wait = Math.min(30, 2 ** failures) * 1000;
        status.textContent = `Connection lost; retrying in ${wait / 1000} s (the upload resumes where it stopped)…`;
        await sleep(wait);
      } else {
        throw new Error(answer.body?.error?.message || `The chunk was refused (HTTP ${answer.status}).`);
      }
    }
  }
  status.textContent = `${human(total)} uploaded; starting the import…`;
  const job = await api.request('POST', `${base}uploads/${upload.id}/complete/`);
  try { localStorage.removeItem(key); } catch { /* nothing to forget */ }
  $('upload-cancel').hidden = true;
  status.textContent = `${human(total)} uploaded. Import #${job.id} runs on the workers.`;
  currentUpload = null;
  return job;
}

async function start(items) {
  items = stripCommonFolder(items.filter((i) => !IGNORED.test(i.path)));
  if (!items.length) { flash('Nothing to upload: no files were dropped.', { error: true }); return; }
  const total = items.reduce((n, i) => n + i.file.size, 0);
  const limit = Number(panel.dataset.maxBytes);
  if (limit && total > limit) {
    flash(`These files are ${human(total)}; one upload takes at most ${human(limit)}. Split them.`, { error: true });
    return;
  }
  try {
    const job = await uploadAll(items);
    history.replaceState(null, '', `/console/projects/${encodeURIComponent(slug)}/import/${job.id}/`);
    followJob(job.id);
  } catch (err) {
    if (err.message === 'cancelled') return;
    $('upload-error').textContent = err.message;
    $('upload-status').textContent = 'Stopped.';
    flash(err.message, { error: true });
  }
}

$('upload-cancel').addEventListener('click', async () => {
  cancelled = true;
  if (currentUpload) {
    try { await api.request('DELETE', `${base}uploads/${currentUpload.id}/`); } catch { /* already gone */ }
  }
  $('upload-status').textContent = 'Cancelled; nothing was imported.';
  $('upload-cancel').hidden = true;
});

// ---------------------------------------------------------------- drop, choose
const drop = $('import-drop');
['dragenter', 'dragover'].forEach((type) => drop.addEventListener(type, (ev) => {
  ev.preventDefault(); drop.classList.add('over');
}));
['dragleave', 'drop'].forEach((type) => drop.addEventListener(type, () => drop.classList.remove('over')));
drop.addEventListener('drop', async (ev) => {
  ev.preventDefault();
  const entries = [...(ev.dataTransfer.items || [])].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const items = entries.length ? (await Promise.all(entries.map((e) => entryFiles(e)))).flat()
    : fromFileList(ev.dataTransfer.files);
  start(items);
});
drop.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('import-files').click(); }
});
drop.addEventListener('click', (ev) => { if (!ev.target.closest('label')) $('import-files').click(); });
for (const id of ['import-files', 'import-folder']) {
  $(id).addEventListener('change', (ev) => { start(fromFileList(ev.target.files)); ev.target.value = ''; });
}
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'o' && !ev.ctrlKey && !ev.metaKey && !(ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement)) {
    ev.preventDefault(); $('import-files').click();
  }
});

// ---------------------------------------------------------------- the job and its report
let following = 0;
let reportFilter = '';
let reportNext = null;

function showJob(job) {
  $('import-job').hidden = false;
  $('job-title').textContent = `#${job.id} · ${job.source_name || job.format}`;
  const state = $('job-state');
  state.textContent = job.state; state.className = `state ${job.state}`;
  const p = job.progress;
  const bar = $('job-progress');
  bar.max = Math.max(p.total, 1); bar.value = job.state === 'done' ? bar.max : p.done;
  $('job-status').textContent = job.state === 'preparing' ? 'A worker is unpacking and reading the upload…'
    : `${p.done} of ${p.total} entries · ${p.images_imported} photos added, ${p.images_duplicate} duplicate`
      + (p.batches_failed ? ` · ${p.batches_failed} batches failed` : '');
  $('job-error').textContent = job.error || (p.batches_failed ? 'Some batches failed (a worker error, listed in the report); retry them.' : '');
  $('job-retry').hidden = !(job.state === 'failed' && p.batches_failed);
  $('count-added').textContent = job.report.added;
  $('count-duplicate').textContent = job.report.duplicate;
  $('count-refused').textContent = job.report.refused;
  $('count-masks').textContent = p.masks_imported;
  $('count-masks-dup').textContent = `${p.masks_duplicate} duplicate`;
  let row = document.querySelector(`#import-jobs tr[data-job="${job.id}"]`);
  if (!row) { // a job started on this page: listed on top
    const table = $('import-jobs');
    table.querySelector('td.empty')?.closest('tr').remove();
    row = table.insertRow(1);
    row.dataset.job = job.id;
    const link = document.createElement('a');
    link.href = `/console/projects/${encodeURIComponent(slug)}/import/${job.id}/`; link.textContent = job.id;
    row.insertCell().append(link);
    for (const text of [job.source_name, job.created_by || 'CLI', job.created_at.slice(0, 16).replace('T', ' ')]) {
      row.insertCell().textContent = text;
    }
    const state = document.createElement('span'); state.className = 'state';
    row.insertCell().append(state);
    for (let i = 0; i < 4; i += 1) row.insertCell().className = 'n';
  }
  const stateCell = row.querySelector('.state');
  stateCell.textContent = job.state; stateCell.className = `state ${job.state}`;
  const figures = [`${p.done} / ${p.total}`, p.images_imported, p.images_duplicate, p.masks_imported];
  [...row.cells].slice(5).forEach((cell, i) => { cell.textContent = String(figures[i]); });
}

function reportRow(e) {
  const tr = document.createElement('tr');
  const cells = [e.name, e.outcome, e.masks_added, e.masks_duplicate, e.reason];
  cells.forEach((text, i) => {
    const td = tr.insertCell(); td.textContent = String(text);
    if (i === 1) td.className = `outcome-${e.outcome}`;
    if (i === 2 || i === 3) td.className = 'n';
    if (i === 4) td.className = 'reason';
  });
  return tr;
}

async function loadReport(jobId, { append = false } = {}) {
  const body = $('import-report').tBodies[0];
  const url = append && reportNext ? (() => { const u = new URL(reportNext, window.location.href); return u.pathname + u.search; })()
    : `${base}imports/${jobId}/entries/?page_size=100${reportFilter ? `&outcome=${reportFilter}` : ''}`;
  const page = await api.request('GET', url);
  if (!append) body.replaceChildren();
  page.results.forEach((e) => body.append(reportRow(e)));
  if (!page.results.length && !append) {
    const td = body.insertRow().insertCell(); td.colSpan = 5; td.className = 'empty';
    td.textContent = reportFilter ? `No ${reportFilter} files.` : 'No entries yet.';
  }
  reportNext = page.next;
  $('report-more').hidden = !page.next;
}

async function followJob(jobId) {
  following = jobId;
  let lastDone = -1;
  for (;;) {
    if (following !== jobId) return;
    let job;
    try { job = await api.request('GET', `${base}imports/${jobId}/`); } catch (err) {
      $('job-status').textContent = `${err.message} Retrying…`; await sleep(3000); continue;
    }
    const finished = job.state === 'done' || job.state === 'failed';
    if (job.progress.done !== lastDone || finished) { // the report first: a test or a lead sees 'done' with it
      lastDone = job.progress.done;
      try { await loadReport(jobId); } catch { /* shown on the next poll */ }
    }
    showJob(job);
    if (finished) {
      flash(job.state === 'done'
        ? `Import #${job.id} done: ${job.report.added} added, ${job.report.duplicate} duplicate, ${job.report.refused} refused.`
        : `Import #${job.id} failed: ${job.error || 'some batches failed'}.`, { error: job.state === 'failed' });
      return;
    }
    await sleep(1000);
  }
}

document.querySelectorAll('.outcome-filter').forEach((button) => button.addEventListener('click', () => {
  reportFilter = button.dataset.outcome;
  document.querySelectorAll('.outcome-filter').forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
  if (following) loadReport(following);
}));
$('report-next').addEventListener('click', () => loadReport(following, { append: true }));
$('job-retry').addEventListener('click', async () => {
  try { await api.request('POST', `${base}imports/${following}/retry/`); followJob(following); } catch (err) {
    flash(err.message, { error: true });
  }
});

if (panel.dataset.job) followJob(Number(panel.dataset.job));
