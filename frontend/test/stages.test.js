import { describe, expect, it } from 'vitest';
import { BINDINGS } from '../src/keymap.js';
import { LOADING, pairOnScreen, reduce, winnerOf } from '../src/stages.js';

// Every state handed to the reducer is frozen, deeply: an edit of its input throws (ES modules are
// strict), so each test below also checks that the reducer leaves the state it was given alone.
function deepFreeze(value) {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

let clock = 0;
/** Run actions (keymap names or objects) in order, each a second after the last. */
function run(state, ...actions) {
  return actions.reduce((s, a) => {
    clock += 1000;
    return reduce(deepFreeze(s), typeof a === 'string' ? { type: a, at: clock } : { at: clock, ...a });
  }, state);
}

const generatorLayout = (i) => ({ rotation: [1, 0, 0, 0], translation: [0.1 * i, 0, -2], scale: [1, 1, 1] });

function makeItem({ n = 4, protocol = 'king_of_the_hill', sides = [], layoutStage = false, threshold = 3 } = {}) {
  return {
    id: 42, protocol, sides, layout_stage: layoutStage,
    quality_scale: { min: 1, max: 5, threshold, labels: {} },
    candidates: Array.from({ length: n }, (_, i) => ({ id: 10 + i, layout: generatorLayout(i) })),
  };
}

/** An item on screen, its first pair drawn. */
const shown = (options) => run(LOADING, { type: 'item', item: makeItem(options) }, 'ready');
/** King of the hill decided to its end (left every time: with sides all true, the king stays). */
const rated = (options, rating = 'rate-4') => run(shown({ n: 3, ...options }), 'left', 'left', rating);

describe('king of the hill', () => {
  it('puts the king against each challenger on the side the server chose, then asks for a rating', () => {
    let s = shown({ sides: [true, false, true] });
    expect(s.stage).toBe('compare');
    expect(pairOnScreen(s)).toEqual([10, 11]);
    s = run(s, 'right'); // the challenger, on the right, wins
    expect(pairOnScreen(s)).toEqual([12, 11]); // the new king, shown on the right this time
    s = run(s, 'equal'); // on equal the king stays
    expect(s.stage).toBe('compare');
    expect(pairOnScreen(s)).toEqual([11, 13]);
    s = run(s, 'left');
    expect(s.stage).toBe('rate');
    expect(pairOnScreen(s)).toEqual([11]); // the winner, alone
    expect(winnerOf(s)).toBe(11);
  });

  it('submits the last king as the winner, every comparison with its decision time, and the rating', () => {
    const s = run(shown({ sides: [true, true, false] }), 'right', 'left', 'right', 'rate-4', 'submit');
    expect(s.judgement).toEqual({
      comparisons: [
        // timed from the item's arrival: the second its first pair took to load counts
        { left: 10, right: 11, outcome: 'right', decided_ms: 2000 },
        { left: 11, right: 12, outcome: 'left', decided_ms: 1000 },
        { left: 13, right: 11, outcome: 'right', decided_ms: 1000 },
      ],
      ranking: null, winner: 11, rating: 4, layout: null,
    });
  });

  it('undo takes back the rating first, then the comparisons one by one, back to the first pair', () => {
    let s = run(shown({ sides: [true, true, true] }), 'right', 'right', 'left', 'rate-2');
    s = run(s, 'undo');
    expect(s.stage).toBe('rate');
    expect(s.rating).toBeNull();
    s = run(s, 'undo');
    expect(s.stage).toBe('compare');
    expect(pairOnScreen(s)).toEqual([12, 13]);
    s = run(s, 'undo', 'undo');
    expect(pairOnScreen(s)).toEqual([10, 11]);
    s = run(s, 'undo');
    expect(pairOnScreen(s)).toEqual([10, 11]);
    expect(s.tournament.history).toEqual([]);
  });

  it('times a decision from the undo that brought its pair back, not from the first look', () => {
    let s = run(shown({ n: 2 }), 'left', 'rate-3', 'undo', 'undo');
    s = run(s, 'right', 'rate-3', 'submit');
    expect(s.judgement.comparisons).toEqual([{ left: 10, right: 11, outcome: 'right', decided_ms: 1000 }]);
  });

  it('a single candidate goes straight to rating', () => {
    const s = shown({ n: 1 });
    expect(s.stage).toBe('rate');
    expect(pairOnScreen(s)).toEqual([10]);
    expect(run(s, 'rate-5', 'submit').judgement).toMatchObject({ comparisons: [], winner: 10, rating: 5 });
  });
});

describe('full ranking', () => {
  const ranked = () => shown({ protocol: 'full_ranking' });

  it('shows the selected candidate beside its neighbour, and the one above it at the bottom', () => {
    let s = ranked();
    expect(s.stage).toBe('rank');
    expect(pairOnScreen(s)).toEqual([10, 11]);
    s = run(s, 'cursor-down', 'cursor-down', 'cursor-down');
    expect(pairOnScreen(s)).toEqual([13, 12]);
  });

  it('moves, ties and confirms; the rating shows the top candidate alone and it is the winner', () => {
    let s = run(ranked(), 'cursor-down', 'move-up', 'cursor-down', 'tie', 'cursor-down', 'cursor-down', 'move-up', 'undo');
    expect(s.ranking.groups()).toEqual([[11, 10], [12], [13]]);
    s = run(s, 'confirm-ranking');
    expect(s.stage).toBe('rate');
    expect(pairOnScreen(s)).toEqual([11]);
    s = run(s, 'rate-4', 'submit');
    expect(s.judgement).toEqual({ comparisons: [], ranking: [[11, 10], [12], [13]], winner: 11, rating: 4, layout: null });
  });

  it('undo in the rating stage reopens the ranking as it was', () => {
    let s = run(ranked(), 'cursor-down', 'move-up', 'confirm-ranking', 'undo');
    expect(s.stage).toBe('rank');
    expect(s.ranking.groups()).toEqual([[11], [10], [12], [13]]);
    expect(pairOnScreen(s)).toEqual([11, 10]);
  });

  it('V shows the selected candidate large, alone, until pressed again or the ranking is confirmed', () => {
    let s = run(ranked(), 'cursor-down', 'view-large');
    expect(pairOnScreen(s)).toEqual([11]);
    expect(pairOnScreen(run(s, 'view-large'))).toEqual([11, 12]);
    s = run(s, 'confirm-ranking', 'undo');
    expect(pairOnScreen(s)).toEqual([10, 11]);
  });

  it('moving past either end, tying the top candidate or undoing nothing changes nothing', () => {
    const s = ranked();
    for (const action of ['cursor-up', 'move-up', 'tie', 'undo']) expect(run(s, action)).toBe(s);
    const bottom = run(s, 'cursor-down', 'cursor-down', 'cursor-down');
    for (const action of ['cursor-down', 'move-down']) expect(run(bottom, action)).toBe(bottom);
  });
});

describe('rating and submission', () => {
  it('Enter without a rating asks for one and submits nothing', () => {
    const s = run(shown({ n: 2 }), 'left', 'submit');
    expect(s.stage).toBe('rate');
    expect(s.judgement).toBeNull();
    expect(s.notice).toEqual({ text: 'Rate the winner first: press a digit.', level: 'warn' });
    expect(run(s, 'layout')).toMatchObject({ stage: 'rate', notice: { level: 'warn' } });
  });

  it('in a layout-stage project Enter opens the layout stage for an acceptable winner only', () => {
    const hard = rated({ layoutStage: true, threshold: 3 }, 'rate-2');
    expect(run(hard, 'submit').judgement).toMatchObject({ winner: 10, rating: 2, layout: null });
    let s = run(rated({ layoutStage: true, threshold: 3 }, 'rate-3'), 'submit');
    expect(s.stage).toBe('layout');
    expect(s.judgement).toBeNull();
    s = run(s, 'submit');
    expect(s.judgement).toMatchObject({ winner: 10, rating: 3, layout: generatorLayout(0) });
  });

  it('L opens the layout stage on request; Esc goes back to rating and the layout is still submitted', () => {
    let s = run(rated({ sides: [false, false] }), 'layout', 'nudge-x+', 'cancel');
    expect(s.stage).toBe('rate');
    expect(s.notice.text).toBe('');
    expect(pairOnScreen(s)).toEqual([12]); // challengers won on the left: the last one is the winner
    const moved = s.layout;
    expect(moved.translation[0]).toBeGreaterThan(generatorLayout(2).translation[0]);
    s = run(s, 'submit');
    expect(s.judgement.layout).toBe(moved);
  });

  it('once submitted, no key changes anything (no second submission)', () => {
    const s = run(rated(), 'submit');
    for (const b of BINDINGS) expect(run(s, b.action)).toBe(s);
    expect(run(s, 'layout-start', { type: 'layout-change', layout: generatorLayout(5) })).toBe(s);
  });
});

describe('layout stage', () => {
  const layoutOn = () => run(rated(), 'layout'); // winner 10, 2 m from the camera

  it('keys move and scale the winner: a hundredth of its distance per arrow, five for depth, 5% per +/-', () => {
    let s = run(layoutOn(), 'nudge-x+', 'nudge-x+', 'nudge-y-', 'nudge-z+');
    const [x, y, z] = s.layout.translation;
    expect(x).toBeCloseTo(0.04, 4); // 0.02 m per press at 2 m
    expect(y).toBeCloseTo(-0.02, 4);
    expect(z).toBeLessThan(-1.89); expect(z).toBeGreaterThan(-1.91); // 5 steps nearer
    s = run(s, 'scale-up', 'scale-up', 'scale-down');
    s.layout.scale.forEach((v) => expect(v).toBeCloseTo(1.05, 6));
  });

  it('undo walks back every step to the generator\'s layout, and then does nothing', () => {
    const start = layoutOn();
    expect(start.layout).toEqual(generatorLayout(0));
    let s = run(start, 'nudge-x+', 'nudge-y+', 'scale-up', 'nudge-z-', 'layout-reset', 'nudge-x-');
    for (let i = 0; i < 6; i++) s = run(s, 'undo');
    expect(s.layout).toEqual(generatorLayout(0));
    expect(run(s, 'undo')).toBe(s);
  });

  it('reset brings back the generator\'s layout, and can itself be undone', () => {
    let s = run(layoutOn(), 'nudge-x+', 'nudge-x+');
    const moved = s.layout;
    s = run(s, 'layout-reset');
    expect(s.layout).toEqual(generatorLayout(0));
    expect(run(s, 'undo').layout).toBe(moved);
  });

  it('a drag of the gizmo is one undo step however many moves it reports', () => {
    let s = run(layoutOn(), 'nudge-x+');
    const before = s.layout;
    s = run(s, 'layout-start', ...[1, 2, 3].map((k) => ({ type: 'layout-change', layout: generatorLayout(k) })));
    expect(s.layout).toEqual(generatorLayout(3));
    s = run(s, 'undo');
    expect(s.layout).toBe(before);
  });

  it('comes back to the layout left behind when reopened', () => {
    const s = run(layoutOn(), 'nudge-y+', 'cancel', 'layout');
    expect(s.stage).toBe('layout');
    expect(s.layout.translation[1]).toBeCloseTo(0.02, 4);
    expect(run(s, 'undo').layout).toEqual(generatorLayout(0));
  });
});

describe('flag', () => {
  it('F asks for a reason; Esc goes back to the same comparison with the prompt gone', () => {
    const s = run(shown({ sides: [true, true, true] }), 'right');
    const flagging = run(s, 'flag');
    expect(flagging.stage).toBe('flag');
    expect(flagging.notice.text).toMatch(/1 bad mask, 2 bad photo, 3 other/);
    const back = run(flagging, 'cancel');
    expect(back.stage).toBe('compare');
    expect(back.notice.text).toBe('');
    expect(pairOnScreen(back)).toEqual(pairOnScreen(s));
  });

  it('Esc from a flag raised while rating a ranking goes back to rating', () => {
    const s = run(shown({ protocol: 'full_ranking' }), 'confirm-ranking', 'rate-4', 'flag', 'cancel');
    expect(s.stage).toBe('rate');
    expect(s.rating).toBe(4);
  });
});

describe('keys that do nothing in a stage do nothing', () => {
  // The DOM layer runs these itself; the stages never see them.
  const domActions = new Set(['turntable', 'cycle-mode', 'overlay', 'skip', 'retry', 'mode-translate', 'mode-rotate', 'mode-scale',
    'show-textured', 'show-geometry', 'show-wireframe', 'show-normals', 'show-splat']);
  const stateIn = {
    compare: () => shown(),
    rank: () => shown({ protocol: 'full_ranking' }),
    rate: () => rated(),
    layout: () => run(rated(), 'layout'),
    flag: () => run(shown(), 'flag'),
  };

  for (const [stage, make] of Object.entries(stateIn)) {
    it(`in ${stage}, the actions of other stages' keys leave everything as it was`, () => {
      const s = make();
      expect(s.stage).toBe(stage);
      const unbound = BINDINGS.filter((b) => !b.stages.includes(stage) && !domActions.has(b.action)
        && !BINDINGS.some((o) => o.action === b.action && o.stages.includes(stage)));
      expect(unbound.length).toBeGreaterThan(5);
      for (const b of unbound) expect(run(s, b.action), `${b.action} in ${stage}`).toBe(s);
    });
  }

  it('while the first pair loads, and with no item on screen, no key does anything', () => {
    const loading = run(LOADING, { type: 'item', item: makeItem() });
    expect(loading.stage).toBe('loading');
    const none = run(LOADING, 'no-item');
    expect(none.stage).toBe('done');
    for (const s of [loading, none, LOADING]) {
      for (const b of BINDINGS) expect(run(s, b.action), `${b.action} in ${s.stage}`).toBe(s);
    }
  });
});
