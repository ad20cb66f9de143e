import { describe, expect, it } from 'vitest';
import {
  cropAround, defaultIntrinsics, depthToPoints, iou, layoutOverlap, maskOutline, parseNpy, projectPoint, projectPoints,
  projectionFromK, quatToMat3, rasterizeDiscs, rasterizeTriangles, rleDecode, splatRadii, toCamera,
} from '../src/projection.js';
import { BITS, RLE } from './fixtures.js';

const close = (a, b, eps = 1e-6) => expect(Math.abs(a - b)).toBeLessThan(eps);

describe('camera convention (modelzoo/generators/base.py)', () => {
  it('default intrinsics: 60° horizontal fov, principal point at the centre', () => {
    const K = defaultIntrinsics(600, 400);
    close(K[0][0], 300 / Math.tan(Math.PI / 6));
    expect(K[0][2]).toBe(300); expect(K[1][2]).toBe(200);
    // a point on the right edge of the view at 1 m: x = tan(30°)
    const [u, v, d] = projectPoint(K, [Math.tan(Math.PI / 6), 0, -1]);
    close(u, 600); close(v, 200); close(d, 1);
  });

  it('+Y up in the camera frame is up in the image (v decreases)', () => {
    const K = defaultIntrinsics(100, 100);
    expect(projectPoint(K, [0, 0.1, -1])[1]).toBeLessThan(50);
  });

  it('quaternion (w, x, y, z): 90° about +Y maps +X to -Z', () => {
    const s = Math.SQRT1_2;
    const R = quatToMat3([s, 0, s, 0]);
    const x = [R[0][0], R[1][0], R[2][0]];
    close(x[0], 0); close(x[1], 0); close(x[2], -1);
  });

  it('p_cam = t + R(q) (s * p_obj)', () => {
    const s = Math.SQRT1_2;
    const layout = { rotation: [s, 0, 0, s], translation: [1, 2, -3], scale: [2, 2, 2] };
    const p = toCamera(new Float32Array([1, 0, 0]), layout); // +X rotated 90° about Z -> +Y
    close(p[0], 1, 1e-5); close(p[1], 4, 1e-5); close(p[2], -3, 1e-5);
    const q = toCamera(new Float32Array([1, 0, 0]), { ...layout, scale: 0.5 });
    close(q[1], 2.5, 1e-5);
  });

  it('projectionFromK agrees with K, off-centre principal point included', () => {
    const K = [[500, 0, 260], [0, 480, 170], [0, 0, 1]];
    const w = 640; const h = 360;
    const P = projectionFromK(K, w, h); // column-major
    for (const pt of [[0.1, -0.2, -2], [-0.5, 0.3, -3.5], [0, 0, -1]]) {
      const clip = [0, 1, 2, 3].map((r) => P[r] * pt[0] + P[4 + r] * pt[1] + P[8 + r] * pt[2] + P[12 + r]);
      const ndcX = clip[0] / clip[3]; const ndcY = clip[1] / clip[3];
      const [u, v] = projectPoint(K, pt);
      close((ndcX + 1) * w / 2, u, 1e-6);
      close((1 - ndcY) * h / 2, v, 1e-6);
      const ndcZ = clip[2] / clip[3];
      expect(ndcZ).toBeGreaterThan(-1); expect(ndcZ).toBeLessThan(1);
    }
  });

  it('projectPoints matches projectPoint', () => {
    const K = defaultIntrinsics(320, 240);
    const pts = new Float32Array([0.1, 0.2, -1, -0.3, 0.05, -2]);
    const uv = projectPoints(K, pts);
    const [u, v] = projectPoint(K, [-0.3, 0.05, -2]);
    close(uv[3], u, 1e-3); close(uv[4], v, 1e-3);
  });
});

describe('masks', () => {
  it('decodes COCO compressed RLE written by engine.masks.encode', () => {
    const m = rleDecode(RLE);
    expect(Array.from(m).join('')).toBe(BITS);
  });

  it('rasterises triangles and measures IoU', () => {
    // a 10 x 10 square as two triangles
    const uv = new Float32Array([0, 0, 1, 10, 0, 1, 10, 10, 1, 0, 10, 1]);
    const faces = [0, 1, 2, 0, 2, 3];
    const sq = rasterizeTriangles(uv, faces, 20, 10);
    const count = sq.reduce((a, b) => a + b, 0);
    expect(count).toBe(100);
    const half = new Uint8Array(200); for (let y = 0; y < 10; y++) for (let x = 0; x < 20; x++) half[y * 20 + x] = x < 5 ? 1 : 0;
    close(iou(sq, half), 50 / 100);
    expect(iou(new Uint8Array(4), new Uint8Array(4))).toBe(0);
  });

  it('skips triangles behind the camera', () => {
    const uv = new Float32Array([0, 0, -1, 10, 0, 1, 10, 10, 1]);
    expect(rasterizeTriangles(uv, [0, 1, 2], 10, 10).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it('outlines a mask', () => {
    const m = new Uint8Array(25); for (let y = 1; y < 4; y++) for (let x = 1; x < 4; x++) m[y * 5 + x] = 1;
    const o = maskOutline(m, 5, 5);
    expect(o.reduce((a, b) => a + b, 0)).toBe(8);
    expect(o[12]).toBe(0);
  });

  it('crops a square around the object inside the image', () => {
    const [x, y, w, h] = cropAround([550, 10, 40, 20], 600, 400);
    expect(w).toBe(h);
    expect(x + w).toBeLessThanOrEqual(600); expect(y).toBeGreaterThanOrEqual(0);
    expect(x).toBeLessThanOrEqual(550);
  });

  it('layout overlap is high when the projected mesh covers the mask and drops when moved', () => {
    const width = 200; const height = 200; const K = defaultIntrinsics(width, height);
    // a unit square in the object's XY plane, 2 m in front of the camera
    const points = new Float32Array([-0.5, -0.5, 0, 0.5, -0.5, 0, 0.5, 0.5, 0, -0.5, 0.5, 0]);
    const faces = [0, 1, 2, 0, 2, 3];
    const layout = { rotation: [1, 0, 0, 0], translation: [0, 0, -2], scale: [1, 1, 1] };
    const uv = projectPoints(K, toCamera(points, layout));
    const mask = rasterizeTriangles(uv, faces, width, height);
    expect(layoutOverlap({ points, faces, layout, K, width, height, mask, maxSide: 200 })).toBeGreaterThan(0.98);
    const moved = { ...layout, translation: [0.5, 0, -2] };
    const o = layoutOverlap({ points, faces, layout: moved, K, width, height, mask, maxSide: 100 });
    expect(o).toBeLessThan(0.5); expect(o).toBeGreaterThan(0.1);
  });

  it('a splat covers the mask by its Gaussians: discs of their projected size', () => {
    const width = 200; const height = 200; const K = defaultIntrinsics(width, height);
    const layout = { rotation: [1, 0, 0, 0], translation: [0, 0, -2], scale: [1, 1, 1] };
    // one Gaussian of sigma 0.1 m, 2 m away: 1.5 sigma = 0.15 m = fx * 0.15 / 2 pixels
    const radii = splatRadii(projectPoints(K, toCamera(new Float32Array([0, 0, 0]), layout)), new Float32Array([0.1]), K, layout);
    close(radii[0], (K[0][0] * 0.15) / 2, 1e-3);
    expect(splatRadii(new Float32Array([0, 0, 2]), new Float32Array([0]), K, layout)[0]).toBe(0); // transparent: no disc
    const disc = rasterizeDiscs(new Float32Array([100, 100, 2]), new Float32Array([10]), width, height);
    const area = disc.reduce((a, b) => a + b, 0);
    expect(Math.abs(area - Math.PI * 100) / (Math.PI * 100)).toBeLessThan(0.05);
    // a grid of Gaussians over the unit square: the same silhouette as the square's two triangles
    const pts = []; const sig = [];
    for (let i = 0; i <= 40; i++) for (let j = 0; j <= 40; j++) { pts.push(-0.5 + i / 40, -0.5 + j / 40, 0); sig.push(0.015); }
    const points = new Float32Array(pts); const sigmas = new Float32Array(sig);
    const square = new Float32Array([-0.5, -0.5, 0, 0.5, -0.5, 0, 0.5, 0.5, 0, -0.5, 0.5, 0]);
    const mask = rasterizeTriangles(projectPoints(K, toCamera(square, layout)), [0, 1, 2, 0, 2, 3], width, height);
    expect(layoutOverlap({ points, sigmas, layout, K, width, height, mask, maxSide: 200 })).toBeGreaterThan(0.85);
    const moved = { ...layout, translation: [0.5, 0, -2] };
    expect(layoutOverlap({ points, sigmas, layout: moved, K, width, height, mask, maxSide: 200 })).toBeLessThan(0.5);
  });
});

describe('depth', () => {
  it('parses a float32 .npy and back-projects it', () => {
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    const padded = header.padEnd(117, ' ') + '\n'; // 10 + 118 = 128 bytes
    const buf = new ArrayBuffer(128 + 16);
    const bytes = new Uint8Array(buf);
    bytes.set([0x93, ...'NUMPY'.split('').map((c) => c.charCodeAt(0)), 1, 0, padded.length & 0xff, padded.length >> 8]);
    bytes.set(new TextEncoder().encode(padded), 10);
    new Float32Array(buf, 128).set([1, 0, 2, 3]);
    const { shape, data } = parseNpy(buf);
    expect(shape).toEqual([2, 2]);
    expect(Array.from(data)).toEqual([1, 0, 2, 3]);
    const K = [[1, 0, 1], [0, 1, 1], [0, 0, 1]];
    const pts = depthToPoints(data, 2, 2, K, 1);
    expect(pts.length).toBe(9); // one pixel unknown
    close(pts[2], -1); // depth 1 m in front: z = -1
    close(pts[0], -0.5); close(pts[1], 0.5); // pixel (0,0) centre is left of and above the centre
  });
});
