import * as THREE from 'three';
import { describe, expect, it } from 'vitest';
import { studioEnvironment } from '../src/environment.js';

const halfs = (face) => Array.from(face.image.data, (h) => THREE.DataUtils.fromHalfFloat(h));
const luminance = (face) => {
  const v = halfs(face), out = [];
  for (let k = 0; k < v.length; k += 4) out.push(0.2126 * v[k] + 0.7152 * v[k + 1] + 0.0722 * v[k + 2]);
  return out;
};
const spread = (xs) => Math.max(...xs) - Math.min(...xs);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const level = (cube, lod) => (lod === 0 ? cube.image : cube.mipmaps[lod - 1].image);

describe('the studio environment', () => {
  const cube = studioEnvironment();

  it('is a prefiltered cube that three samples as is, one level per size down to 1 texel', () => {
    expect(cube.isPMREMTexture).toBe(true);
    expect(cube.generateMipmaps).toBe(false);
    expect(cube.image).toHaveLength(6);
    expect(cube.mipmaps.map((m) => m.image[0].image.width)).toEqual([16, 8, 4, 2, 1]);
    for (const m of cube.mipmaps) expect(m.image).toHaveLength(6);
  });

  it('blurs the rough levels: the sharp panels spread into soft light', () => {
    const px = 0; // +X face: the brighter softbox and the ceiling's edge
    const spreads = [0, 3, 4].map((lod) => spread(luminance(level(cube, lod)[px]))); // 1 and 2: too sharp to blur
    for (let k = 1; k < spreads.length; k++) expect(spreads[k]).toBeLessThan(spreads[k - 1]);
    for (const lod of [0, 1, 2, 3, 4]) for (const face of level(cube, lod)) expect(halfs(face).every(Number.isFinite)).toBe(true);
  });

  it('lights from above: the diffuse light of the ceiling outshines the floor', () => {
    const diffuse = level(cube, 4); // faces +X -X +Y -Y +Z -Z
    expect(mean(luminance(diffuse[2]))).toBeGreaterThan(2 * mean(luminance(diffuse[3])));
  });
});
