import '../workbench.css';
import { Api } from '../api.js';
import * as sceneview from '../sceneview.js';

const root = document.getElementById('scene-view');
const api = new Api({ base: root.dataset.api || '/api/v1/' });
const status = root.querySelector('.status');
const view = sceneview.setup(root.querySelector('.scene-stage'));

async function main() {
  // The page embeds the judged objects (annotation/workbench.py); no extra API round trip.
  const objects = JSON.parse(document.getElementById('scene-objects').textContent);
  if (!objects.length) { status.textContent = 'No judged object in this photo yet.'; return; }
  let splats = 0;
  try {
    await Promise.all(objects.map(async (o) => {
      const c = o.candidate;
      const layout = o.layout ?? c.layout;
      const mesh = c.glb_compact_url || c.glb_url;
      // Each object as it was judged: its splat where it has no mesh (a splat-only candidate).
      if (!mesh && c.splat_url) {
        splats += 1;
        await view.addSplat(c.id, new Uint8Array(await api.bytes(c.splat_url)), layout);
      } else {
        await view.add(c.id, await api.bytes(mesh), layout);
      }
    }));
  } catch (err) {
    status.textContent = `Could not load the objects: ${err.message}`;
    return;
  }
  view.frame();
  const n = objects.length;
  status.textContent = `${n} object${n > 1 ? 's' : ''} at their judged layouts${splats ? ` (${splats} as Gaussian splats)` : ''}. `
    + `Drag to orbit; D downloads the scene's meshes as one GLB.`;
}

async function download() {
  const glb = await view.exportGlb();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([glb], { type: 'model/gltf-binary' }));
  a.download = `scene-image-${root.dataset.image}.glb`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

root.querySelector('.download').addEventListener('click', download);
document.addEventListener('keydown', (e) => { if (e.key === 'd' || e.key === 'D') download(); });
main();
