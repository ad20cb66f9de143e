// The workbench's stages as a pure reducer, reduce(state, action) -> state: no DOM, no network,
// no clock (an action carries its time `at`, in ms on performance.now()'s clock, where it matters).
// The input state is never changed; an action that does nothing in a stage returns it as it is.
//
//   loading ─► compare (king of the hill) ─► rate ─► [layout] ─► judgement
//          └─► rank (full ranking) ────────┘
//   flag from compare, rank or rate (Esc goes back); done when no item is on screen.
//
// Actions are keymap.js's action names ({type: 'left', at}), the viewer's layout gestures
// ('layout-start', 'layout-change') and the item's life ('loading', 'item', 'ready', 'no-item').
// The DOM layer (workbench.js) runs the actions that are not about stages itself: turntable,
// cycle-mode, overlay, skip, flag-<reason>, retry and the layout gizmo's mode-*.
import { FullRanking, KingOfTheHill, OUTCOMES } from './tournament.js';

/**
 * @typedef {object} StageState
 * @property {string} stage        loading | compare | rank | rate | layout | flag | done
 * @property {object|null} item    the server's item payload (docs/annotation-api.md), read only
 * @property {KingOfTheHill|null} tournament  king of the hill items
 * @property {FullRanking|null} ranking       full ranking items
 * @property {boolean} rankingDone the annotator confirmed the ranking (Enter)
 * @property {boolean} large       rank stage: the selected candidate alone
 * @property {number|null} rating  the winner's quality, on the item's quality scale
 * @property {object|null} layout  the winner's layout {rotation, translation, scale} once the layout stage ran
 * @property {object[]} layoutUndo earlier layouts, most recent last
 * @property {boolean} layoutVisited the layout stage ran: the judgement carries the layout
 * @property {number} decisionStart when the pair on screen appeared (ms)
 * @property {{text: string, level: string}|null} notice  what the stages ask the page to say; a new object each time
 * @property {object|null} judgement set once submitted: {comparisons, ranking, winner, rating, layout}; then nothing changes
 */

const NO_ITEM = {
  item: null, tournament: null, ranking: null, rankingDone: false, large: false, rating: null,
  layout: null, layoutUndo: [], layoutVisited: false, decisionStart: 0, notice: null, judgement: null,
};
export const LOADING = Object.freeze({ ...NO_ITEM, stage: 'loading' });
const DONE = Object.freeze({ ...NO_ITEM, stage: 'done' });

const FLAGGABLE = new Set(['compare', 'rank', 'rate']);
const RATE_FIRST = 'Rate the winner first: press a digit.';
const FLAG_PROMPT = 'Flag this item: 1 bad mask, 2 bad photo, 3 other; Esc to cancel.';
const SCALE_STEP = 1.05; // + and - in the layout stage
const NUDGE = 0.01; // of the object's distance from the camera, per arrow key; depth moves 5 times as far

const notice = (text, level = 'info') => ({ text, level });

/** The stage state of a new item, still loading its first pair. */
export function itemState(item, at = 0) {
  const ids = item.candidates.map((c) => c.id);
  const ranked = item.protocol === 'full_ranking';
  return {
    ...NO_ITEM, stage: 'loading', item, decisionStart: at,
    tournament: ranked ? null : new KingOfTheHill(ids, item.sides ?? []),
    ranking: ranked ? new FullRanking(ids) : null,
  };
}

export function reduce(state, action) {
  switch (action.type) {
    case 'loading': return LOADING;
    case 'no-item': return DONE;
    case 'item': return itemState(action.item, action.at);
    default: break;
  }
  if (!state.item || state.judgement) return state; // nothing on screen, or already submitted
  switch (action.type) {
    case 'ready': return state.stage === 'loading' ? { ...state, stage: baseStage(state) } : state;
    case 'flag':
      return FLAGGABLE.has(state.stage) ? { ...state, stage: 'flag', notice: notice(FLAG_PROMPT) } : state;
    case 'cancel':
      if (state.stage === 'layout') return { ...state, stage: 'rate', notice: notice('') };
      if (state.stage === 'flag') return { ...state, stage: baseStage(state), notice: notice('') };
      return state;
    case 'layout-start': // the viewer's gizmo starts a drag: one undo step for the whole drag
      return state.layout ? { ...state, layoutUndo: [...state.layoutUndo, state.layout] } : state;
    case 'layout-change':
      return action.layout ? { ...state, layout: action.layout } : state;
    default: break;
  }
  switch (state.stage) {
    case 'compare': return compare(state, action);
    case 'rank': return rank(state, action);
    case 'rate': return rate(state, action);
    case 'layout': return layoutStage(state, action);
    default: return state;
  }
}

/** Where the item goes back to from flag (and, for ranking, what Esc and undo lead to). */
export function baseStage(state) {
  if (state.tournament) return state.tournament.done ? 'rate' : 'compare';
  return state.rankingDone ? 'rate' : 'rank';
}

/** The winner: the last king, or the top of the ranking; null before the tournament ends. */
export function winnerOf(state) {
  if (state.tournament) return state.tournament.winner;
  return state.ranking ? state.ranking.winner : null;
}

/** The candidates on screen, left to right. */
export function pairOnScreen(state) {
  if (!state.item) return [];
  const t = state.tournament;
  if (t) {
    const p = t.current();
    return p ? [p.left, p.right] : [t.winner];
  }
  const r = state.ranking;
  if (state.stage === 'rate' || state.large) return [r.selected];
  const other = r.entries[r.cursor + 1] ?? r.entries[r.cursor - 1];
  return other ? [r.selected, other.id] : [r.selected];
}

function compare(state, { type, at }) {
  if (type === 'undo') return takeBack(state, at);
  if (!OUTCOMES.includes(type)) return state;
  const t = state.tournament.clone();
  t.decide(type, at - state.decisionStart);
  return { ...state, tournament: t, stage: t.done ? 'rate' : 'compare', decisionStart: at };
}

/** Undo the last comparison; the decision timer restarts either way. */
function takeBack(state, at) {
  if (!state.tournament.history.length) return { ...state, decisionStart: at };
  const t = state.tournament.clone();
  t.undo();
  return { ...state, tournament: t, stage: t.done ? 'rate' : 'compare', decisionStart: at };
}

function rank(state, { type }) {
  if (type === 'view-large') return { ...state, large: !state.large };
  const r = state.ranking.clone();
  let changed;
  switch (type) {
    case 'cursor-up': changed = r.moveCursor(-1) !== state.ranking.cursor; break;
    case 'cursor-down': changed = r.moveCursor(1) !== state.ranking.cursor; break;
    case 'move-up': changed = r.move(-1); break;
    case 'move-down': changed = r.move(1); break;
    case 'tie': changed = r.toggleTie(); break;
    case 'undo': changed = r.undo(); break;
    case 'confirm-ranking':
      r.cursor = 0; // the winner, selected, is what the rate stage shows
      return { ...state, ranking: r, rankingDone: true, large: false, stage: 'rate' };
    default: changed = false;
  }
  return changed ? { ...state, ranking: r } : state;
}

function rate(state, { type, at }) {
  if (type.startsWith('rate-')) return { ...state, rating: Number(type.slice(5)) };
  if (type === 'undo') {
    if (state.rating != null) return { ...state, rating: null };
    if (state.tournament) return takeBack(state, at);
    return { ...state, rankingDone: false, stage: 'rank' };
  }
  if (type === 'layout') return enterLayout(state);
  if (type === 'submit') {
    if (state.rating == null) return { ...state, notice: notice(RATE_FIRST, 'warn') };
    // The layout target matters only for an acceptable winner (the server requires it then).
    const threshold = state.item.quality_scale?.threshold ?? 0;
    if (state.item.layout_stage && !state.layoutVisited && state.rating >= threshold) return enterLayout(state);
    return submit(state);
  }
  return state;
}

function enterLayout(state) {
  if (state.rating == null) return { ...state, notice: notice(RATE_FIRST, 'warn') };
  return { ...state, stage: 'layout', layoutVisited: true, layout: state.layout ?? candidateLayout(state) };
}

/** The layout the generator gave the winner. */
function candidateLayout(state) {
  const id = winnerOf(state);
  return state.item.candidates.find((c) => c.id === id).layout;
}

function layoutStage(state, { type }) {
  const L = state.layout;
  const step = NUDGE * (Math.hypot(...L.translation) || 1);
  const nudge = (axis, d) => L.translation.map((v, i) => (i === axis ? v + d : v));
  const edit = (layout) => ({ ...state, layout, layoutUndo: [...state.layoutUndo, L] });
  switch (type) {
    case 'nudge-x-': return edit({ ...L, translation: nudge(0, -step) });
    case 'nudge-x+': return edit({ ...L, translation: nudge(0, step) });
    case 'nudge-y+': return edit({ ...L, translation: nudge(1, step) });
    case 'nudge-y-': return edit({ ...L, translation: nudge(1, -step) });
    case 'nudge-z-': return edit({ ...L, translation: nudge(2, -5 * step) });
    case 'nudge-z+': return edit({ ...L, translation: nudge(2, 5 * step) });
    case 'scale-up': return edit({ ...L, scale: L.scale.map((v) => v * SCALE_STEP) });
    case 'scale-down': return edit({ ...L, scale: L.scale.map((v) => v / SCALE_STEP) });
    case 'layout-reset': return edit(candidateLayout(state));
    case 'undo':
      if (!state.layoutUndo.length) return state;
      return { ...state, layout: state.layoutUndo.at(-1), layoutUndo: state.layoutUndo.slice(0, -1) };
    case 'submit': return submit(state);
    default: return state;
  }
}

function submit(state) {
  return {
    ...state,
    judgement: {
      comparisons: state.tournament ? state.tournament.comparisons() : [],
      ranking: state.ranking ? state.ranking.groups() : null,
      winner: winnerOf(state),
      rating: state.rating,
      layout: state.layoutVisited ? state.layout : null,
    },
  };
}
