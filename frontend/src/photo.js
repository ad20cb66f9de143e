// The photo panel: the photo with the mask outlined, and per comparison side a crop around the
// object with that candidate projected onto the photo at its predicted layout (plain 2D canvas:
// the candidates' one WebGL context stays the only one).
import { cropAround, maskOutline, projectPoints, splatRadii, toCamera } from './projection.js';

const OUTLINE = [255, 225, 77, 255]; // yellow: visible on most photos, unlike red on red

export class PhotoPanel {
  constructor({ full, crops }) {
    this.full = full; this.crops = crops; // canvases
    this.item = null;
  }

  /** bitmap: ImageBitmap of the photo; mask: row-major 0/1 at the photo's size. */
  setItem({ bitmap, width, height, mask, bbox, K }) {
    this.clear();
    const photo = document.createElement('canvas');
    photo.width = width; photo.height = height;
    const ctx = photo.getContext('2d');
    ctx.drawImage(bitmap, 0, 0, width, height);
    const outlined = document.createElement('canvas');
    outlined.width = width; outlined.height = height;
    const octx = outlined.getContext('2d');
    octx.drawImage(photo, 0, 0);
    if (mask) {
      const edge = maskOutline(mask, width, height);
      const img = octx.getImageData(0, 0, width, height);
      const thick = Math.max(1, Math.round(Math.max(width, height) / 300)); // ~1 px on screen at least
      for (let i = 0; i < edge.length; i++) {
        if (!edge[i]) continue;
        const x0 = i % width; const y0 = (i - x0) / width;
        for (let dy = 0; dy < thick; dy++) {
          for (let dx = 0; dx < thick; dx++) {
            const x = Math.min(width - 1, x0 + dx); const y = Math.min(height - 1, y0 + dy);
            img.data.set(OUTLINE, (y * width + x) * 4);
          }
        }
      }
      octx.putImageData(img, 0, 0);
    }
    this.item = { bitmap, width, height, mask, bbox, K, photo, outlined, crop: cropAround(bbox, width, height) };
    this.drawFull();
  }

  /** A canvas with the bare photo (the layout stage's background). */
  photoCanvas() { return this.item?.photo ?? null; }

  drawFull() {
    const c = this.full; const it = this.item;
    if (!it) return;
    const s = Math.min(c.clientWidth / it.width, (c.clientHeight || 1e9) / it.height) || 1;
    fitCanvas(c, Math.round(it.width * s), Math.round(it.height * s));
    const ctx = c.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.drawImage(it.outlined, 0, 0, c.width, c.height);
    const [x, y, w, h] = it.crop;
    ctx.strokeStyle = 'rgba(255,255,255,.8)'; ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
    ctx.strokeRect(x * c.width / it.width, y * c.height / it.height, w * c.width / it.width, h * c.height / it.height);
    ctx.setLineDash([]);
  }

  /** Draw crop `side` (0 left, 1 right) with a candidate's projection, or the bare crop. */
  drawCrop(side, geometry, layout, { overlay = true } = {}) {
    const c = this.crops[side]; const it = this.item;
    if (!c || !it) return;
    const size = Math.max(64, Math.round(c.clientWidth || 256));
    fitCanvas(c, size, size);
    const [x, y, w] = it.crop;
    const s = c.width / w;
    const ctx = c.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#111'; ctx.fillRect(0, 0, c.width, c.height);
    ctx.setTransform(s, 0, 0, s, -x * s, -y * s);
    ctx.drawImage(it.outlined, 0, 0);
    if (overlay && geometry && layout) {
      if (geometry.faces) drawProjection(ctx, geometry, layout, it.K, 1 / s);
      else drawSplatProjection(ctx, geometry, layout, it.K, 1 / s);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  clearCrop(side) {
    const c = this.crops[side];
    if (c) c.getContext('2d').clearRect(0, 0, c.width, c.height);
  }

  clear() {
    if (this.item?.bitmap?.close) this.item.bitmap.close();
    this.item = null;
    for (const c of [this.full, ...this.crops]) c?.getContext('2d').clearRect(0, 0, c.width, c.height);
  }
}

function fitCanvas(c, w, h) {
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
}

/** Painter's algorithm over the projected triangles, shaded by their camera-frame normal. */
export function drawProjection(ctx, { points, faces }, layout, K, pixel = 1) {
  const cam = toCamera(points, layout);
  const uv = projectPoints(K, cam);
  const n = faces.length / 3;
  const order = new Uint32Array(n); const depth = new Float32Array(n); const shade = new Float32Array(n);
  const L = [0.35, 0.6, 0.72]; // light from above-front, camera frame
  for (let f = 0; f < n; f++) {
    const a = faces[3 * f] * 3; const b = faces[3 * f + 1] * 3; const c = faces[3 * f + 2] * 3;
    order[f] = f;
    depth[f] = uv[a + 2] + uv[b + 2] + uv[c + 2];
    const ux = cam[b] - cam[a]; const uy = cam[b + 1] - cam[a + 1]; const uz = cam[b + 2] - cam[a + 2];
    const vx = cam[c] - cam[a]; const vy = cam[c + 1] - cam[a + 1]; const vz = cam[c + 2] - cam[a + 2];
    let nx = uy * vz - uz * vy; let ny = uz * vx - ux * vz; let nz = ux * vy - uy * vx;
    const len = Math.hypot(nx, ny, nz) || 1; nx /= len; ny /= len; nz /= len;
    if (nz < 0) { nx = -nx; ny = -ny; nz = -nz; } // seen side towards the camera (+Z)
    shade[f] = 0.35 + 0.65 * Math.max(0, nx * L[0] + ny * L[1] + nz * L[2]);
  }
  order.sort((p, q) => depth[q] - depth[p]); // far first
  ctx.save();
  ctx.globalAlpha = 0.55;
  ctx.lineWidth = pixel * 0.5;
  for (const f of order) {
    const a = faces[3 * f] * 3; const b = faces[3 * f + 1] * 3; const c = faces[3 * f + 2] * 3;
    if (uv[a + 2] <= 0 || uv[b + 2] <= 0 || uv[c + 2] <= 0) continue;
    const g = Math.round(255 * shade[f]);
    ctx.fillStyle = `rgb(${Math.round(g * 0.35)},${g},${Math.round(g * 0.9)})`;
    ctx.strokeStyle = ctx.fillStyle;
    ctx.beginPath();
    ctx.moveTo(uv[a], uv[a + 1]); ctx.lineTo(uv[b], uv[b + 1]); ctx.lineTo(uv[c], uv[c + 1]);
    ctx.closePath(); ctx.fill(); ctx.stroke();
  }
  ctx.restore();
}

/** A splat over the photo: each (kept) Gaussian a disc of its own colour, far to near. */
export function drawSplatProjection(ctx, { points, sigmas, colors }, layout, K, pixel = 1) {
  const uv = projectPoints(K, toCamera(points, layout));
  const radii = splatRadii(uv, sigmas, K, layout, 1);
  const n = radii.length;
  const order = Uint32Array.from({ length: n }, (_, i) => i).sort((p, q) => uv[3 * q + 2] - uv[3 * p + 2]);
  ctx.save();
  ctx.globalAlpha = 0.7;
  for (const i of order) {
    const r = Math.max(radii[i], pixel * 0.75);
    if (!radii[i]) continue;
    ctx.fillStyle = `rgb(${colors[3 * i]},${colors[3 * i + 1]},${colors[3 * i + 2]})`;
    ctx.fillRect(uv[3 * i] - r, uv[3 * i + 1] - r, 2 * r, 2 * r);
  }
  ctx.restore();
}
