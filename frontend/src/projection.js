// Camera maths and 2D masks, pure (no DOM, no three), shared by the photo overlay, the layout
// stage's overlap figure and the scene view. Conventions: modelzoo/generators/base.py —
//   object frame metres, +Y up; camera frame OpenGL style (+X right, +Y up, looking down -Z);
//   p_cam = t + R(q) · (s ⊙ p_obj), q = (w, x, y, z);
//   u = cx + fx · x / -z,  v = cy - fy · y / -z  (pixels, rows going down).

/** The default camera of an image without intrinsics: 60° horizontal field of view, centred. */
export function defaultIntrinsics(width, height) {
  const fx = (0.5 * width) / Math.tan((60 * Math.PI) / 180 / 2);
  return [[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]];
}

export function intrinsicsFor(image) {
  return image.intrinsics ?? defaultIntrinsics(image.width, image.height);
}

/** Row-major 3x3 rotation matrix of a unit quaternion (w, x, y, z). */
export function quatToMat3([w, x, y, z]) {
  const n = Math.hypot(w, x, y, z) || 1;
  w /= n; x /= n; y /= n; z /= n;
  return [
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ];
}

export function normaliseScale(scale) {
  return typeof scale === 'number' ? [scale, scale, scale] : scale;
}

/** Object-frame points (flat Float32Array xyz...) to camera-frame points, per the layout. */
export function toCamera(points, layout) {
  const R = quatToMat3(layout.rotation);
  const [sx, sy, sz] = normaliseScale(layout.scale);
  const [tx, ty, tz] = layout.translation;
  const out = new Float32Array(points.length);
  for (let i = 0; i < points.length; i += 3) {
    const x = points[i] * sx; const y = points[i + 1] * sy; const z = points[i + 2] * sz;
    out[i] = tx + R[0][0] * x + R[0][1] * y + R[0][2] * z;
    out[i + 1] = ty + R[1][0] * x + R[1][1] * y + R[1][2] * z;
    out[i + 2] = tz + R[2][0] * x + R[2][1] * y + R[2][2] * z;
  }
  return out;
}

/** One camera-frame point to pixels: [u, v, depth] (depth = -z, positive in front). */
export function projectPoint(K, [x, y, z]) {
  const d = -z;
  return [K[0][2] + (K[0][0] * x) / d, K[1][2] - (K[1][1] * y) / d, d];
}

/** Camera-frame points (flat) to pixels (flat u, v, depth triples). */
export function projectPoints(K, cam) {
  const out = new Float32Array(cam.length);
  const fx = K[0][0]; const fy = K[1][1]; const cx = K[0][2]; const cy = K[1][2];
  for (let i = 0; i < cam.length; i += 3) {
    const d = -cam[i + 2];
    out[i] = cx + (fx * cam[i]) / d;
    out[i + 1] = cy - (fy * cam[i + 1]) / d;
    out[i + 2] = d;
  }
  return out;
}

/**
 * A perspective projection matrix (column-major, as three's Matrix4.fromArray wants) that maps the
 * camera frame exactly as K does for an image of width x height, principal point included.
 */
export function projectionFromK(K, width, height, near = 0.01, far = 100) {
  const fx = K[0][0]; const fy = K[1][1]; const cx = K[0][2]; const cy = K[1][2];
  const a = -(far + near) / (far - near);
  const b = (-2 * far * near) / (far - near);
  // Row-major rows of P; NDC x = 2u/w - 1, NDC y = 1 - 2v/h.
  const rows = [
    [(2 * fx) / width, 0, 1 - (2 * cx) / width, 0],
    [0, (2 * fy) / height, (2 * cy) / height - 1, 0],
    [0, 0, a, b],
    [0, 0, -1, 0],
  ];
  const out = new Array(16);
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) out[c * 4 + r] = rows[r][c];
  return out;
}

/** Vertical field of view in degrees for K and an image height (for a plain PerspectiveCamera). */
export function fovYDegrees(K, height) {
  return (2 * Math.atan(height / 2 / K[1][1]) * 180) / Math.PI;
}

/**
 * Fill the projected triangles into a width x height bitmap (1 inside). `uv` holds u, v, depth
 * triples in pixels of a (possibly scaled) image; triangles with a vertex behind the camera are
 * skipped. Pixel centres are at (x + 0.5, y + 0.5).
 */
export function rasterizeTriangles(uv, faces, width, height, out = new Uint8Array(width * height)) {
  for (let f = 0; f < faces.length; f += 3) {
    const a = faces[f] * 3; const b = faces[f + 1] * 3; const c = faces[f + 2] * 3;
    if (uv[a + 2] <= 0 || uv[b + 2] <= 0 || uv[c + 2] <= 0) continue;
    const x0 = uv[a]; const y0 = uv[a + 1]; const x1 = uv[b]; const y1 = uv[b + 1]; const x2 = uv[c]; const y2 = uv[c + 1];
    const area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
    if (area === 0) continue;
    const minX = Math.max(0, Math.floor(Math.min(x0, x1, x2)));
    const maxX = Math.min(width - 1, Math.ceil(Math.max(x0, x1, x2)));
    const minY = Math.max(0, Math.floor(Math.min(y0, y1, y2)));
    const maxY = Math.min(height - 1, Math.ceil(Math.max(y0, y1, y2)));
    for (let y = minY; y <= maxY; y++) {
      const py = y + 0.5;
      for (let x = minX; x <= maxX; x++) {
        const px = x + 0.5;
        const w0 = (x1 - px) * (y2 - py) - (x2 - px) * (y1 - py);
        const w1 = (x2 - px) * (y0 - py) - (x0 - px) * (y2 - py);
        const w2 = (x0 - px) * (y1 - py) - (x1 - px) * (y0 - py);
        if ((w0 >= 0 && w1 >= 0 && w2 >= 0) || (w0 <= 0 && w1 <= 0 && w2 <= 0)) out[y * width + x] = 1;
      }
    }
  }
  return out;
}

/**
 * Projected pixel radius of each splat Gaussian: `k` standard deviations (`sigmas`, object frame,
 * metres) scaled by the layout's mean scale and seen at the point's depth, at least half a pixel.
 */
export function splatRadii(uv, sigmas, K, layout, k = 1.5) {
  const [sx, sy, sz] = normaliseScale(layout.scale);
  const s = (Math.abs(sx) + Math.abs(sy) + Math.abs(sz)) / 3;
  const f = 0.5 * (K[0][0] + K[1][1]);
  const out = new Float32Array(sigmas.length);
  for (let i = 0; i < sigmas.length; i++) {
    const d = uv[3 * i + 2];
    out[i] = d > 0 && sigmas[i] > 0 ? Math.max(0.5, (k * f * s * sigmas[i]) / d) : 0;
  }
  return out;
}

/** Fill a disc per projected point (radius in pixels; 0 skips it) into a width x height bitmap. */
export function rasterizeDiscs(uv, radii, width, height, out = new Uint8Array(width * height)) {
  for (let i = 0; i < radii.length; i++) {
    const r = radii[i];
    if (!(r > 0) || uv[3 * i + 2] <= 0) continue;
    const u = uv[3 * i]; const v = uv[3 * i + 1];
    const minX = Math.max(0, Math.floor(u - r)); const maxX = Math.min(width - 1, Math.ceil(u + r));
    const minY = Math.max(0, Math.floor(v - r)); const maxY = Math.min(height - 1, Math.ceil(v + r));
    for (let y = minY; y <= maxY; y++) {
      const dy = y + 0.5 - v;
      for (let x = minX; x <= maxX; x++) {
        const dx = x + 0.5 - u;
        if (dx * dx + dy * dy <= r * r) out[y * width + x] = 1;
      }
    }
  }
  return out;
}

/** Intersection over union of two same-sized 0/1 bitmaps (0 when both are empty). */
export function iou(a, b) {
  let inter = 0; let union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ? 1 : 0; const y = b[i] ? 1 : 0;
    inter += x & y; union += x | y;
  }
  return union ? inter / union : 0;
}

/**
 * Decode a COCO compressed RLE ({size: [h, w], counts: "..."}) into a row-major h x w bitmap.
 * COCO runs are column-major and alternate 0s then 1s; the string is pycocotools' LEB-style code.
 */
export function rleDecode({ size: [h, w], counts }) {
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0; let k = 0; let more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      // Arithmetic, not bit shifts: JS shifts wrap at 32 bits, pycocotools' longs do not.
      x += (c & 0x1f) * 2 ** (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && c & 0x10) x -= 2 ** (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  const out = new Uint8Array(h * w);
  let idx = 0; let v = 0;
  for (const r of runs) {
    if (v) {
      for (let i = idx; i < idx + r; i++) {
        const col = Math.floor(i / h); const row = i - col * h;
        out[row * w + col] = 1;
      }
    }
    idx += r; v ^= 1;
  }
  return out;
}

/** Nearest-neighbour downscale of a 0/1 bitmap to (w2, h2). */
export function resampleMask(mask, w, h, w2, h2) {
  const out = new Uint8Array(w2 * h2);
  for (let y = 0; y < h2; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / h2));
    for (let x = 0; x < w2; x++) {
      const sx = Math.min(w - 1, Math.floor(((x + 0.5) * w) / w2));
      out[y * w2 + x] = mask[sy * w + sx];
    }
  }
  return out;
}

/** Boundary pixels of a 0/1 bitmap (inside pixels with a 4-neighbour outside). */
export function maskOutline(mask, w, h) {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]) out[i] = 1;
    }
  }
  return out;
}

/** A crop box [x, y, w, h] around bbox, grown by `margin` of its size, squared, clipped to the image. */
export function cropAround([bx, by, bw, bh], width, height, margin = 0.35) {
  const side = Math.max(bw, bh) * (1 + 2 * margin);
  const cx = bx + bw / 2; const cy = by + bh / 2;
  const s = Math.max(8, Math.min(side, width, height));
  const x = Math.min(Math.max(0, cx - s / 2), width - s);
  const y = Math.min(Math.max(0, cy - s / 2), height - s);
  return [Math.max(0, x), Math.max(0, y), s, s];
}

/** Projected-mesh vs mask overlap (IoU) at a working resolution of at most `maxSide` pixels. */
export function layoutOverlap({ points, faces = null, sigmas = null, layout, K, width, height, mask, maxSide = 160 }) {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  const w2 = Math.max(1, Math.round(width * scale)); const h2 = Math.max(1, Math.round(height * scale));
  const uv = projectPoints(K, toCamera(points, layout));
  // A mesh's silhouette is its triangles; a splat's, a disc per Gaussian (1.5 standard deviations).
  const radii = faces ? null : splatRadii(uv, sigmas, K, layout).map((r) => r * scale);
  for (let i = 0; i < uv.length; i += 3) { uv[i] *= w2 / width; uv[i + 1] *= h2 / height; }
  const sil = faces ? rasterizeTriangles(uv, faces, w2, h2) : rasterizeDiscs(uv, radii, w2, h2);
  const m = resampleMask(mask, width, height, w2, h2);
  return iou(sil, m);
}

/** Back-project a depth map (metres, 0 unknown; row-major h x w) to camera-frame points. */
export function depthToPoints(depth, w, h, K, stride = 2) {
  const pts = [];
  const fx = K[0][0]; const fy = K[1][1]; const cx = K[0][2]; const cy = K[1][2];
  for (let v = 0; v < h; v += stride) {
    for (let u = 0; u < w; u += stride) {
      const d = depth[v * w + u];
      if (!(d > 0) || !Number.isFinite(d)) continue;
      pts.push(((u + 0.5 - cx) / fx) * d, -((v + 0.5 - cy) / fy) * d, -d);
    }
  }
  return new Float32Array(pts);
}

/** Parse a little-endian float32 .npy (2D or 3D) into {shape, data}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  const headerLen = major === 1 ? bytes[8] | (bytes[9] << 8) : new DataView(buffer).getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLen));
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error('only little-endian float32 .npy is supported');
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-ordered .npy is not supported');
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const offset = start + headerLen;
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: new Float32Array(buffer.slice(offset, offset + n * 4)) };
}
