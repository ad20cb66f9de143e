import '../workbench.css';
import { Api } from '../api.js';

const root = document.getElementById('artist-queue');
const api = new Api({ base: root.dataset.api || '/api/v1/' });
const list = root.querySelector('.cases');
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

async function load(page = 1) {
  let data;
  try { data = await api.hardCases(root.dataset.slug, page); } catch (err) {
    list.innerHTML = `<p class="error">Could not load the hard cases: ${esc(err.message)}</p>`;
    return;
  }
  const rows = data.results ?? [];
  if (!rows.length) { list.innerHTML = '<p>No hard case is waiting for an artist.</p>'; return; }
  list.innerHTML = rows.map((it) => `
    <article class="card hard-case" data-item="${it.id}">
      <h3>Item ${it.id} · ${esc(it.mask?.label || 'object')} <span class="muted">best rating ${esc(it.best_rating ?? '–')}</span></h3>
      <div class="row"><img class="photo" src="${esc(it.image.thumbnail_url || it.image.url)}" alt="photo">
      ${(it.candidates ?? []).map((c) => `<figure><img src="${esc(c.preview_url)}" alt="rejected candidate ${c.id}"><figcaption>rejected #${c.id}</figcaption></figure>`).join('')}</div>
      <label>Artist mesh (GLB, +Y up, metres): <input type="file" accept=".glb,model/gltf-binary"></label>
      <button type="button">Upload</button> <span class="result"></span>
    </article>`).join('');
}

list.addEventListener('click', async (e) => {
  const button = e.target.closest('button');
  if (!button) return;
  const card = button.closest('.hard-case');
  const file = card.querySelector('input[type=file]').files[0];
  const out = card.querySelector('.result');
  if (!file) { out.textContent = 'Choose a .glb file first.'; return; }
  out.textContent = 'Uploading…';
  try {
    await api.uploadArtistMesh(card.dataset.item, file);
    out.textContent = 'Uploaded: the item is done with the artist\'s mesh.';
  } catch (err) { out.textContent = err.message; }
});

load();
