// Tournament state, pure (no DOM, no three): king of the hill and full ranking.
// Conventions from docs/annotation-api.md: comparison k (1-based) is the current king against
// candidates[k]; sides[k-1] true means the king is shown on the left; the winner of a comparison
// is the next king and on "equal" the king stays. N candidates give N-1 comparisons.

export const OUTCOMES = Object.freeze(['left', 'equal', 'right']);

export class KingOfTheHill {
  /** @param {number[]} ids candidate ids in tournament order; @param {boolean[]} sides */
  constructor(ids, sides = []) {
    if (!Array.isArray(ids) || ids.length < 1) throw new Error('a tournament needs at least one candidate');
    if (new Set(ids).size !== ids.length) throw new Error('candidate ids must be distinct');
    this.ids = ids.slice();
    this.sides = ids.slice(1).map((_, i) => (sides[i] === undefined ? true : Boolean(sides[i])));
    this.history = []; // [{left, right, outcome, decided_ms, king, challenger}]
  }

  /** Number of comparisons in the whole run: N - 1. */
  get total() { return this.ids.length - 1; }
  /** 1-based index of the comparison on screen (total + 1 once done). */
  get k() { return this.history.length + 1; }
  get done() { return this.history.length >= this.total; }

  get king() {
    if (!this.history.length) return this.ids[0];
    const last = this.history[this.history.length - 1];
    return last.winner;
  }

  /** The winner once done, else null. */
  get winner() { return this.done ? this.king : null; }

  /** The pair on screen: {left, right, king, challenger, kingOnLeft}; null when done. */
  current() {
    if (this.done) return null;
    const i = this.history.length; // comparison k = i + 1 uses candidates[i + 1]
    const king = this.king;
    const challenger = this.ids[i + 1];
    const kingOnLeft = this.sides[i];
    return {
      left: kingOnLeft ? king : challenger,
      right: kingOnLeft ? challenger : king,
      king, challenger, kingOnLeft, k: i + 1, total: this.total,
    };
  }

  /** Record the annotator's decision on the current pair; returns the new current pair. */
  decide(outcome, decidedMs = 0) {
    if (!OUTCOMES.includes(outcome)) throw new Error(`unknown outcome '${outcome}'`);
    const pair = this.current();
    if (!pair) throw new Error('the tournament is over');
    let winner = pair.king;
    if (outcome === 'left') winner = pair.left;
    else if (outcome === 'right') winner = pair.right;
    this.history.push({
      left: pair.left, right: pair.right, outcome, decided_ms: Math.max(0, Math.round(decidedMs)),
      king: pair.king, challenger: pair.challenger, winner,
    });
    return this.current();
  }

  /** Take back the last decision; returns false when there is nothing to undo. */
  undo() {
    if (!this.history.length) return false;
    this.history.pop();
    return true;
  }

  /** Ids still in play: the king and every challenger not yet seen. */
  inPlay() {
    const set = new Set([this.king]);
    for (let j = this.history.length + 1; j < this.ids.length; j++) set.add(this.ids[j]);
    return set;
  }

  /** Ids already shown on screen (the king and challengers met so far, including the current pair). */
  seen() {
    const upto = Math.min(this.history.length + 2, this.ids.length);
    return new Set(this.ids.slice(0, upto));
  }

  /** Comparisons as the API wants them. */
  comparisons() {
    return this.history.map(({ left, right, outcome, decided_ms }) => ({ left, right, outcome, decided_ms }));
  }

  /** An independent copy (what stages.js edits, so that the state it was given stays as it was). */
  clone() {
    const t = Object.create(KingOfTheHill.prototype);
    // ids and sides never change after construction; history entries are never changed once pushed.
    return Object.assign(t, { ids: this.ids, sides: this.sides, history: this.history.slice() });
  }
}

/**
 * Full ranking with ties: an ordered list of entries {id, tie}, where tie means "tied with the
 * entry above". A cursor selects one entry; every edit can be undone.
 */
export class FullRanking {
  constructor(ids) {
    if (!Array.isArray(ids) || ids.length < 1) throw new Error('a ranking needs at least one candidate');
    this.entries = ids.map((id) => ({ id, tie: false }));
    this.cursor = 0;
    this.undoStack = [];
  }

  /** An independent copy (what stages.js edits, so that the state it was given stays as it was). */
  clone() {
    const r = Object.create(FullRanking.prototype);
    const copy = (entries) => entries.map((e) => ({ ...e }));
    // Snapshots too: undo() makes a snapshot's entries the live ones, which move() then edits.
    return Object.assign(r, {
      entries: copy(this.entries), cursor: this.cursor,
      undoStack: this.undoStack.map((s) => ({ entries: copy(s.entries), cursor: s.cursor })),
    });
  }

  _snapshot() {
    this.undoStack.push({ entries: this.entries.map((e) => ({ ...e })), cursor: this.cursor });
  }

  get selected() { return this.entries[this.cursor].id; }

  moveCursor(delta) {
    this.cursor = Math.min(this.entries.length - 1, Math.max(0, this.cursor + delta));
    return this.cursor;
  }

  select(id) {
    const i = this.entries.findIndex((e) => e.id === id);
    if (i >= 0) this.cursor = i;
  }

  /** Move the selected candidate up (delta -1) or down (+1) one place; it leaves any tie group. */
  move(delta) {
    const i = this.cursor;
    const j = i + delta;
    if (j < 0 || j >= this.entries.length) return false;
    this._snapshot();
    const below = this.entries[i + 1]; // was tied to the moved entry, if at all
    const [entry] = this.entries.splice(i, 1);
    this.entries.splice(j, 0, entry);
    // A moved candidate leaves its tie group and starts its own; no entry stays tied to it.
    entry.tie = false;
    if (below) below.tie = false;
    if (this.entries[j + 1]) this.entries[j + 1].tie = false;
    this.entries[0].tie = false;
    this.cursor = j;
    return true;
  }

  /** Tie (or untie) the selected candidate with the one above it. */
  toggleTie() {
    if (this.cursor === 0) return false;
    this._snapshot();
    const e = this.entries[this.cursor];
    e.tie = !e.tie;
    return true;
  }

  undo() {
    const last = this.undoStack.pop();
    if (!last) return false;
    this.entries = last.entries;
    this.cursor = last.cursor;
    return true;
  }

  /** Groups of ids, best first; ids in one group are tied. */
  groups() {
    const out = [];
    for (const e of this.entries) {
      if (e.tie && out.length) out[out.length - 1].push(e.id);
      else out.push([e.id]);
    }
    return out;
  }

  /** The best candidate (first of the first group). */
  get winner() { return this.entries[0].id; }

  /** Pairwise comparisons implied by the ranking (for display counts); ties as "equal". */
  impliedPairs() {
    const groups = this.groups();
    const pairs = [];
    for (let a = 0; a < groups.length; a++) {
      for (let i = 0; i < groups[a].length; i++) {
        for (let j = i + 1; j < groups[a].length; j++) pairs.push({ better: groups[a][i], worse: groups[a][j], tie: true });
        for (let b = a + 1; b < groups.length; b++) {
          for (const w of groups[b]) pairs.push({ better: groups[a][i], worse: w, tie: false });
        }
      }
    }
    return pairs;
  }
}
