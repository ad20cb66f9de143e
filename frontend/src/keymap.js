// The workbench's keys, pure data plus one lookup. Every binding here is shown on screen
// (the help bar renders `bindingsFor(stage)`), so a key cannot exist without its label.
//
// Stages: compare (king of the hill), rank (full ranking), rate, layout, flag, done.

const B = (keys, action, label, stages, extra = {}) => ({ keys, action, label, stages, ...extra });

export const BINDINGS = Object.freeze([
  B(['1', 'ArrowLeft'], 'left', 'left better', ['compare']),
  B(['2', 'ArrowDown', '='], 'equal', 'equal', ['compare']),
  B(['3', 'ArrowRight'], 'right', 'right better', ['compare']),

  B(['ArrowUp', 'k'], 'cursor-up', 'select up', ['rank']),
  B(['ArrowDown', 'j'], 'cursor-down', 'select down', ['rank']),
  B(['Shift+ArrowUp', 'K'], 'move-up', 'move up', ['rank']),
  B(['Shift+ArrowDown', 'J'], 'move-down', 'move down', ['rank']),
  B(['t'], 'tie', 'tie with above', ['rank']),
  B(['v'], 'view-large', 'view selected large', ['rank']),
  B(['Enter'], 'confirm-ranking', 'ranking done', ['rank']),

  ...[1, 2, 3, 4, 5].map((n) => B([String(n)], `rate-${n}`, null, ['rate'], { rating: n })),
  B(['Enter'], 'submit', 'submit', ['rate', 'layout']),
  B(['l'], 'layout', 'adjust layout', ['rate']),

  B(['g'], 'mode-translate', 'move', ['layout']),
  B(['r'], 'mode-rotate', 'rotate', ['layout']),
  B(['e'], 'mode-scale', 'scale', ['layout']),
  B(['ArrowLeft'], 'nudge-x-', 'nudge', ['layout'], { hidden: true }),
  B(['ArrowRight'], 'nudge-x+', 'nudge', ['layout'], { hidden: true }),
  B(['ArrowUp'], 'nudge-y+', 'nudge', ['layout'], { hidden: true }),
  B(['ArrowDown'], 'nudge-y-', 'nudge', ['layout'], { hidden: true }),
  B(['PageUp', 'w'], 'nudge-z-', 'farther', ['layout']),
  B(['PageDown', 's'], 'nudge-z+', 'nearer', ['layout']),
  B(['+'], 'scale-up', 'bigger', ['layout']),
  B(['-'], 'scale-down', 'smaller', ['layout']),
  B(['Backspace'], 'layout-reset', 'reset layout', ['layout']),

  B(['1'], 'flag-bad_mask', 'bad mask', ['flag']),
  B(['2'], 'flag-bad_photo', 'bad photo', ['flag']),
  B(['3'], 'flag-other', 'other', ['flag']),
  B(['Escape'], 'cancel', 'cancel', ['flag', 'layout']),

  B(['r', 'R'], 'retry', 'look for an item again', ['done']),
  B(['u', 'Ctrl+z'], 'undo', 'undo', ['compare', 'rank', 'rate', 'layout']),
  B([' '], 'turntable', 'turntable', ['compare', 'rank', 'rate']),
  B(['c'], 'show-textured', 'view textured', ['compare', 'rank', 'rate']),
  B(['g'], 'show-geometry', 'view geometry', ['compare', 'rank', 'rate']),
  B(['w'], 'show-wireframe', 'view wireframe', ['compare', 'rank', 'rate']),
  B(['n'], 'show-normals', 'view normals', ['compare', 'rank', 'rate']),
  B(['p'], 'show-splat', 'view splat', ['compare', 'rank', 'rate']),
  B(['m'], 'cycle-mode', 'next view', ['compare', 'rank', 'rate']),
  B(['o'], 'overlay', 'overlay on photo', ['compare', 'rank', 'rate', 'layout']),
  B(['s', 'S'], 'skip', 'skip item', ['compare', 'rank', 'rate']),
  B(['S'], 'skip', 'skip item', ['layout']),
  B(['f'], 'flag', 'flag item', ['compare', 'rank', 'rate']),
]);

/** Normalise a KeyboardEvent-like {key, shiftKey, ctrlKey, metaKey} to a binding key string. */
export function keyName(ev) {
  let key = ev.key;
  if (key === 'Spacebar') key = ' ';
  const named = key.length > 1; // ArrowUp, Enter, PageUp ...
  if ((ev.ctrlKey || ev.metaKey) && key.length === 1) return `Ctrl+${key.toLowerCase()}`;
  if (ev.shiftKey && named) return `Shift+${key}`;
  return key;
}

/** The action bound to this key in this stage, or null. */
export function actionFor(ev, stage) {
  const name = keyName(ev);
  for (const b of BINDINGS) {
    if (b.stages.includes(stage) && b.keys.includes(name)) return b.action;
  }
  // Shift+S is "S"; a lone shift on a letter is handled by the letter itself.
  return null;
}

/** Bindings to show for a stage: [{keys, label}] with the rating digits folded into one entry. */
export function bindingsFor(stage, { ratingLabels = null } = {}) {
  const out = [];
  const ratings = BINDINGS.filter((b) => b.stages.includes(stage) && b.rating);
  if (ratings.length) {
    const lo = ratings[0].rating; const hi = ratings[ratings.length - 1].rating;
    const label = ratingLabels ? `rate (${lo} ${ratingLabels[lo] ?? ''} … ${hi} ${ratingLabels[hi] ?? ''})` : 'rate';
    out.push({ keys: [`${lo}–${hi}`], label: label.replace(/\s+\)/, ')') });
  }
  const nudges = BINDINGS.filter((b) => b.stages.includes(stage) && b.hidden);
  if (nudges.length) out.push({ keys: ['←↑→↓'], label: 'nudge' });
  for (const b of BINDINGS) {
    if (!b.stages.includes(stage) || b.rating || b.hidden) continue;
    out.push({ keys: b.keys, label: b.label });
  }
  return out;
}

/** Pretty label for a key ("ArrowLeft" -> "←", " " -> "Space"). */
export function keyLabel(key) {
  const map = { ArrowLeft: '←', ArrowRight: '→', ArrowUp: '↑', ArrowDown: '↓', ' ': 'Space', Enter: '⏎ Enter',
    Escape: 'Esc', Backspace: '⌫', 'Shift+ArrowUp': '⇧↑', 'Shift+ArrowDown': '⇧↓', PageUp: 'PgUp', PageDown: 'PgDn',
    'Ctrl+z': 'Ctrl+Z', S: '⇧S' };
  return map[key] ?? key;
}

/** No two bindings of one stage may share a key (checked by the unit tests). */
export function conflicts() {
  const seen = new Map();
  const out = [];
  for (const b of BINDINGS) {
    for (const s of b.stages) {
      for (const k of b.keys) {
        const id = `${s}:${k}`;
        if (seen.has(id)) out.push({ stage: s, key: k, actions: [seen.get(id), b.action] });
        else seen.set(id, b.action);
      }
    }
  }
  return out;
}
