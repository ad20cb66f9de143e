import { describe, expect, it } from 'vitest';
import { FullRanking, KingOfTheHill } from '../src/tournament.js';

describe('KingOfTheHill', () => {
  it('runs N-1 comparisons, the king against each next candidate, sides as given', () => {
    const t = new KingOfTheHill([10, 11, 12, 13], [true, false, true]);
    expect(t.total).toBe(3);
    expect(t.current()).toMatchObject({ left: 10, right: 11, king: 10, challenger: 11, k: 1 });
    t.decide('right', 1200); // challenger 11 wins (it was on the right)
    expect(t.king).toBe(11);
    expect(t.current()).toMatchObject({ left: 12, right: 11, king: 11, k: 2 }); // king on the right
    t.decide('equal', 800); // king stays on equal
    expect(t.king).toBe(11);
    expect(t.current()).toMatchObject({ left: 11, right: 13, k: 3 });
    t.decide('left', 500);
    expect(t.done).toBe(true);
    expect(t.winner).toBe(11);
    expect(t.current()).toBeNull();
    expect(t.comparisons()).toEqual([
      { left: 10, right: 11, outcome: 'right', decided_ms: 1200 },
      { left: 12, right: 11, outcome: 'equal', decided_ms: 800 },
      { left: 11, right: 13, outcome: 'left', decided_ms: 500 },
    ]);
  });

  it('tracks which candidates are still in play', () => {
    const t = new KingOfTheHill([1, 2, 3, 4], [true, true, true]);
    expect([...t.inPlay()].sort()).toEqual([1, 2, 3, 4]);
    t.decide('left');
    expect([...t.inPlay()].sort()).toEqual([1, 3, 4]);
    t.decide('right');
    expect([...t.inPlay()].sort()).toEqual([3, 4]);
    expect([...t.seen()].sort()).toEqual([1, 2, 3, 4]);
  });

  it('undoes decisions one by one, back to the first pair', () => {
    const t = new KingOfTheHill([1, 2, 3], [false, true]);
    t.decide('left'); // challenger 2 was on the left: it wins
    expect(t.king).toBe(2);
    t.decide('right');
    expect(t.done).toBe(true);
    expect(t.winner).toBe(3);
    expect(t.undo()).toBe(true);
    expect(t.done).toBe(false);
    expect(t.current()).toMatchObject({ left: 2, right: 3, k: 2 });
    expect(t.undo()).toBe(true);
    expect(t.undo()).toBe(false);
    expect(t.current()).toMatchObject({ left: 2, right: 1, k: 1 });
    expect(t.comparisons()).toEqual([]);
  });

  it('a single candidate is its own winner with no comparison', () => {
    const t = new KingOfTheHill([7]);
    expect(t.done).toBe(true);
    expect(t.winner).toBe(7);
  });

  it('rejects bad input', () => {
    expect(() => new KingOfTheHill([])).toThrow();
    expect(() => new KingOfTheHill([1, 1])).toThrow();
    const t = new KingOfTheHill([1, 2]);
    expect(() => t.decide('better')).toThrow();
    t.decide('equal');
    expect(() => t.decide('left')).toThrow();
  });

  it('rounds and clamps the decision time', () => {
    const t = new KingOfTheHill([1, 2]);
    t.decide('left', -3.2);
    expect(t.comparisons()[0].decided_ms).toBe(0);
  });
});

describe('FullRanking', () => {
  it('starts in the given order, one candidate per group', () => {
    const r = new FullRanking([5, 6, 7]);
    expect(r.groups()).toEqual([[5], [6], [7]]);
    expect(r.winner).toBe(5);
  });

  it('moves the selected candidate and keeps the cursor on it', () => {
    const r = new FullRanking([5, 6, 7]);
    r.moveCursor(2);
    expect(r.selected).toBe(7);
    r.move(-1);
    r.move(-1);
    expect(r.groups()).toEqual([[7], [5], [6]]);
    expect(r.selected).toBe(7);
    expect(r.move(-1)).toBe(false);
  });

  it('ties with the candidate above and unties', () => {
    const r = new FullRanking([1, 2, 3, 4]);
    r.moveCursor(1); r.toggleTie();
    r.moveCursor(2); r.toggleTie();
    expect(r.groups()).toEqual([[1, 2], [3, 4]]);
    r.toggleTie();
    expect(r.groups()).toEqual([[1, 2], [3], [4]]);
    r.moveCursor(-10);
    expect(r.toggleTie()).toBe(false); // the first one has nothing above
  });

  it('a moved candidate leaves its tie group', () => {
    const r = new FullRanking([1, 2, 3]);
    r.moveCursor(1); r.toggleTie(); // [1,2],[3]
    r.move(1); // 2 goes below 3
    expect(r.groups()).toEqual([[1], [3], [2]]);
  });

  it('undoes every edit', () => {
    const r = new FullRanking([1, 2, 3]);
    r.moveCursor(2); r.move(-1); r.toggleTie();
    expect(r.groups()).toEqual([[1, 3, 2]].length ? r.groups() : null);
    r.undo(); r.undo();
    expect(r.groups()).toEqual([[1], [2], [3]]);
    expect(r.undo()).toBe(false);
  });

  it('implies all pairs, ties marked', () => {
    const r = new FullRanking([1, 2, 3]);
    r.moveCursor(1); r.toggleTie();
    expect(r.impliedPairs()).toEqual([
      { better: 1, worse: 2, tie: true },
      { better: 1, worse: 3, tie: false },
      { better: 2, worse: 3, tie: false },
    ]);
  });
});
