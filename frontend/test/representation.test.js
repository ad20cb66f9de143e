import { describe, expect, it } from 'vitest';
import { capabilities, defaultMode, drawnAs, MODES, nextMode } from '../src/representation.js';

const mesh = { id: 1, glb_compact_url: '/g', splat_url: null, textured: true };
const plainMesh = { id: 2, glb_compact_url: '/g', splat_url: null, textured: false };
const both = { id: 3, glb_compact_url: '/g', splat_url: '/s', textured: false };
const splatOnly = { id: 4, glb_compact_url: null, glb_url: null, splat_url: '/s', textured: false };

describe('representations', () => {
  it('opens an item in its judged representation, textured when the payload has none', () => {
    expect(defaultMode('geometry')).toBe('geometry');
    expect(defaultMode('splat')).toBe('splat');
    expect(defaultMode('textured')).toBe('textured');
    expect(defaultMode(undefined)).toBe('textured');
    expect(defaultMode('voxels')).toBe('textured');
  });

  it('reads what a candidate carries', () => {
    expect(capabilities(mesh)).toEqual({ mesh: true, splat: false, textured: true });
    expect(capabilities(splatOnly)).toEqual({ mesh: false, splat: true, textured: false });
    expect(capabilities({ glb_url: '/full' }).mesh).toBe(true);
  });

  it('draws every mesh mode as the mesh and the splat mode as the splat', () => {
    for (const mode of ['textured', 'geometry', 'wireframe', 'normals']) {
      expect(drawnAs(mode, both)).toEqual({ as: 'mesh', note: null });
      expect(drawnAs(mode, plainMesh)).toEqual({ as: 'mesh', note: null });
    }
    expect(drawnAs('splat', both)).toEqual({ as: 'splat', note: null });
  });

  it('draws a candidate lacking the representation as what it has, and says so', () => {
    expect(drawnAs('splat', mesh)).toEqual({ as: 'mesh', note: 'no splat: drawn as its mesh' });
    expect(drawnAs('geometry', splatOnly)).toEqual({ as: 'splat', note: 'no mesh: drawn as its splat' });
    expect(drawnAs('textured', {})).toEqual({ as: null, note: 'nothing to draw' });
  });

  it('cycles through the modes, skipping the splat when no candidate has one', () => {
    expect(nextMode('textured', [mesh, plainMesh])).toBe('geometry');
    expect(nextMode('normals', [mesh, plainMesh])).toBe('textured');
    expect(nextMode('normals', [mesh, both])).toBe('splat');
    expect(nextMode('splat', [mesh, both])).toBe('textured');
    expect(nextMode('splat', [splatOnly])).toBe('splat'); // only the splat mode draws anything of its own
    const seen = new Set();
    let m = 'textured';
    for (let i = 0; i < MODES.length; i++) { seen.add(m); m = nextMode(m, [both]); }
    expect([...seen].sort()).toEqual([...MODES].sort());
  });
});
