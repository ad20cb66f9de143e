// The artists' queue: the list is server-rendered (annotation/workbench.py); this uploads meshes.
import { Api } from '../api.js';

const root = document.getElementById('artist-queue');
const api = new Api({ base: '/api/v1/' });

root.addEventListener('click', async (e) => {
  const button = e.target.closest('button');
  if (!button) return;
  const card = button.closest('.hard-case');
  const file = card.querySelector('input[type=file]').files[0];
  const out = card.querySelector('.result');
  if (!file) { out.textContent = 'Choose a .glb file first.'; return; }
  out.textContent = 'Uploading…';
  button.disabled = true;
  try {
    const r = await api.uploadArtistMesh(card.dataset.item, file);
    out.textContent = `Uploaded (${Math.round(r.size_bytes / 1024)} KB): this mesh is now the item's target.`;
  } catch (err) {
    out.textContent = err.message;
    button.disabled = false;
  }
});
