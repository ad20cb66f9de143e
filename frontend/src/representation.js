// What a candidate is drawn as, pure data (Vitest-tested): the project's judged representation
// (`item.judged_representation`: "geometry" | "textured" | "splat") picks the default view mode,
// every view mode draws one representation, and a candidate lacking it is drawn as what it has,
// with a note that says so on screen. Both sides of a comparison are always drawn in one mode.

/** View modes in the order the M key cycles through them; `draws` is the representation each shows. */
export const VIEW_MODES = Object.freeze([
  { mode: 'textured', draws: 'mesh', label: 'textured' },
  { mode: 'geometry', draws: 'mesh', label: 'geometry (shaded)' },
  { mode: 'wireframe', draws: 'mesh', label: 'wireframe' },
  { mode: 'normals', draws: 'mesh', label: 'normals' },
  { mode: 'splat', draws: 'splat', label: 'splat' },
]);
export const MODES = Object.freeze(VIEW_MODES.map((m) => m.mode));
export const JUDGED = Object.freeze(['geometry', 'textured', 'splat']);

/** The view mode an item opens in: its judged representation (textured when unknown). */
export function defaultMode(judged) {
  return JUDGED.includes(judged) ? judged : 'textured';
}

/** What a candidate of the payload carries: {mesh, splat, textured}. */
export function capabilities(c) {
  return { mesh: Boolean(c?.glb_compact_url || c?.glb_url), splat: Boolean(c?.splat_url), textured: Boolean(c?.textured) };
}

/**
 * How candidate `c` is drawn in view `mode`: {as: 'mesh'|'splat'|null, note}. `note` is the visible
 * explanation when the candidate lacks what the mode shows (null when it is drawn as asked).
 */
export function drawnAs(mode, c) {
  const has = capabilities(c);
  const want = VIEW_MODES.find((m) => m.mode === mode)?.draws ?? 'mesh';
  if (want === 'splat') {
    if (has.splat) return { as: 'splat', note: null };
    return has.mesh ? { as: 'mesh', note: 'no splat: drawn as its mesh' } : { as: null, note: 'nothing to draw' };
  }
  if (has.mesh) {
    return { as: 'mesh', note: null };
  }
  return has.splat ? { as: 'splat', note: 'no mesh: drawn as its splat' } : { as: null, note: 'nothing to draw' };
}

/** The next mode for the M key: modes whose representation no candidate of the item has are skipped. */
export function nextMode(mode, candidates = []) {
  const anySplat = candidates.some((c) => capabilities(c).splat);
  const anyMesh = candidates.some((c) => capabilities(c).mesh);
  const usable = VIEW_MODES.filter((m) => (m.draws === 'splat' ? anySplat : anyMesh) || !candidates.length);
  const list = usable.length ? usable : VIEW_MODES;
  const i = list.findIndex((m) => m.mode === mode);
  return list[(i + 1) % list.length].mode;
}

export function modeLabel(mode) {
  return VIEW_MODES.find((m) => m.mode === mode)?.label ?? mode;
}
