// Image-based lighting for PBR meshes without a GPU prefilter pass.
//
// three's PMREMGenerator renders the environment and blurs it on the GPU: a few milliseconds on a
// graphics card, but seconds of shader compilation and fill in software GL (headless Chromium,
// a remote desktop without a GPU), all of it before the first candidate can be drawn. The studio
// here is an analytic room (a bright ceiling panel, two softer side panels, a warm floor, grey
// walls) prefiltered on the CPU into a small cube texture with one mip level per roughness step,
// in the layout that three's standard material samples directly (`isPMREMTexture`: textureLod of
// a samplerCube at ENVMAP_MAX_LOD * r * (2 - r)). Radiance stays low-frequency, so 32 texels per
// face is enough for the viewers' few hundred pixels; it takes about 25 ms on the main thread.
import * as THREE from 'three';

const FACE_SIZE = 32;
const SOURCE_SIZE = 12; // source directions per face side for the blurred levels (6 x 12 x 12)
// Lobes sharper than cos^100 (half width under 7 degrees, the source's texel spacing) are not
// convolved: the level's own texels are wider than the lobe, and the source would only alias it.
const SHARP_EXPONENT = 100;

/** Radiance of the studio in direction (x, y, z) (unit vector, +Y up): linear RGB. */
export function studioRadiance(x, y, z) {
  // Walls: neutral grey, a little brighter towards the horizon.
  let r = 0.16 + 0.06 * (1 - Math.abs(y)), g = r, b = r * 1.04;
  if (y < -0.15) { r = 0.1; g = 0.09; b = 0.08; } // a warm floor
  if (y > 0.82) { r += 3.0; g += 3.0; b += 3.0; } // the ceiling panel
  const side = (dx, dz, w) => { // a softbox on a wall, centred on direction (dx, 0.25, dz)
    const d = (x * dx + y * 0.25 + z * dz) / Math.hypot(dx, 0.25, dz);
    return d > 0.93 ? w : 0;
  };
  const key = side(0.8, 0.6, 2.5) + side(-0.9, 0.3, 1.0);
  return [r + key, g + key, b + key * 0.97];
}

// Direction of texel (u, v) in [-1, 1] on cube face f, as WebGL's cube map faces are laid out
// (+X, -X, +Y, -Y, +Z, -Z; s to the right, t down).
function faceDirection(f, u, v) {
  switch (f) {
    case 0: return [1, -v, -u];
    case 1: return [-1, -v, u];
    case 2: return [u, 1, v];
    case 3: return [u, -1, -v];
    case 4: return [u, -v, 1];
    default: return [-u, -v, -1];
  }
}

function normalise([x, y, z]) {
  const n = Math.hypot(x, y, z);
  return [x / n, y / n, z / n];
}

// three mirrors x when it samples a cube texture that is not a render target (the cube map
// convention of images), so texel direction (x, y, z) stores the studio's (-x, y, z).
const stored = (x, y, z) => studioRadiance(-x, y, z);

/** Unit direction, radiance and solid angle of every source texel of a `size` cube. */
function sourceSamples(size) {
  const dirs = [], rad = [], weight = [];
  for (let f = 0; f < 6; f++) {
    for (let j = 0; j < size; j++) {
      for (let i = 0; i < size; i++) {
        const u = ((i + 0.5) / size) * 2 - 1, v = ((j + 0.5) / size) * 2 - 1;
        const d = normalise(faceDirection(f, u, v));
        dirs.push(d);
        rad.push(stored(...d));
        weight.push(1 / Math.pow(1 + u * u + v * v, 1.5)); // the texel's solid angle (up to a constant)
      }
    }
  }
  return { dirs, rad, weight };
}

/** One cube level (6 faces x size^2 RGBA half floats), blurred by a lobe of the given roughness. */
function prefilterLevel(size, roughness, source) {
  // A normalised Phong lobe with the GGX lobe's width: exponent 2 / alpha^2 - 2, alpha = roughness^2.
  const alpha = Math.max(roughness * roughness, 1e-4);
  const exponent = Math.max(2 / (alpha * alpha) - 2, 1); // at least the cosine lobe of diffuse light
  const faces = [];
  for (let f = 0; f < 6; f++) {
    const data = new Uint16Array(size * size * 4);
    for (let j = 0; j < size; j++) {
      for (let i = 0; i < size; i++) {
        const u = ((i + 0.5) / size) * 2 - 1, v = ((j + 0.5) / size) * 2 - 1;
        const n = normalise(faceDirection(f, u, v));
        let c = [0, 0, 0];
        if (exponent > SHARP_EXPONENT) { // a lobe narrower than the source's texels: the radiance itself
          c = stored(...n);
        } else {
          let total = 0;
          for (let k = 0; k < source.dirs.length; k++) {
            const d = source.dirs[k];
            const cos = n[0] * d[0] + n[1] * d[1] + n[2] * d[2];
            if (cos <= 0) continue;
            const w = Math.pow(cos, exponent) * source.weight[k];
            total += w;
            c[0] += w * source.rad[k][0]; c[1] += w * source.rad[k][1]; c[2] += w * source.rad[k][2];
          }
          c = c.map((x) => x / total);
        }
        const o = (j * size + i) * 4;
        data[o] = THREE.DataUtils.toHalfFloat(c[0]);
        data[o + 1] = THREE.DataUtils.toHalfFloat(c[1]);
        data[o + 2] = THREE.DataUtils.toHalfFloat(c[2]);
        data[o + 3] = THREE.DataUtils.toHalfFloat(1);
      }
    }
    const face = new THREE.DataTexture(data, size, size, THREE.RGBAFormat, THREE.HalfFloatType);
    faces.push(face);
  }
  return faces;
}

/**
 * The studio as a prefiltered cube texture, ready for `scene.environment`. Level L of its
 * L_max + 1 levels holds the lobe of the roughness r with L_max * r * (2 - r) = L, as three's own
 * PMREM does (the last level is the diffuse light).
 */
export function studioEnvironment() {
  const source = sourceSamples(SOURCE_SIZE);
  const levels = Math.log2(FACE_SIZE) + 1; // 32 .. 1
  // three reads the number of levels as mipmaps.length + 1 for data cube textures (the base level
  // is the texture's own image) but as mipmaps.length for the shader's ENVMAP_MAX_LOD, so the
  // shader's top level is one short of the texture's: lobes are laid out for that maximum.
  const maxLod = levels - 2;
  const roughnessAt = (lod) => (lod >= maxLod ? 1 : 1 - Math.sqrt(1 - lod / maxLod)); // inverts L = L_max r (2 - r)
  const cube = new THREE.CubeTexture(prefilterLevel(FACE_SIZE, 0, source));
  cube.mipmaps = [];
  for (let lod = 1; lod < levels; lod++) {
    const size = FACE_SIZE >> lod;
    cube.mipmaps.push(new THREE.CubeTexture(prefilterLevel(size, roughnessAt(Math.min(lod, maxLod)), source)));
  }
  cube.format = THREE.RGBAFormat;
  cube.type = THREE.HalfFloatType;
  cube.colorSpace = THREE.LinearSRGBColorSpace;
  cube.magFilter = THREE.LinearFilter;
  cube.minFilter = THREE.LinearMipmapLinearFilter;
  cube.generateMipmaps = false;
  cube.isPMREMTexture = true;
  cube.needsUpdate = true;
  return cube;
}
