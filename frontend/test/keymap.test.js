import { describe, expect, it } from 'vitest';
import { BINDINGS, actionFor, bindingsFor, conflicts, keyName } from '../src/keymap.js';

const ev = (key, mods = {}) => ({ key, shiftKey: false, ctrlKey: false, metaKey: false, ...mods });

describe('key map', () => {
  it('maps the comparison keys of the issue', () => {
    expect(actionFor(ev('1'), 'compare')).toBe('left');
    expect(actionFor(ev('ArrowLeft'), 'compare')).toBe('left');
    expect(actionFor(ev('2'), 'compare')).toBe('equal');
    expect(actionFor(ev('3'), 'compare')).toBe('right');
    expect(actionFor(ev('ArrowRight'), 'compare')).toBe('right');
    expect(actionFor(ev('u'), 'compare')).toBe('undo');
    expect(actionFor(ev('z', { ctrlKey: true }), 'compare')).toBe('undo');
    expect(actionFor(ev('s'), 'compare')).toBe('skip');
    expect(actionFor(ev('f'), 'compare')).toBe('flag');
    expect(actionFor(ev(' '), 'compare')).toBe('turntable');
  });

  it('gives digits to the rating once the tournament is over', () => {
    expect(actionFor(ev('1'), 'rate')).toBe('rate-1');
    expect(actionFor(ev('5'), 'rate')).toBe('rate-5');
    expect(actionFor(ev('6'), 'rate')).toBeNull();
    expect(actionFor(ev('Enter'), 'rate')).toBe('submit');
    expect(actionFor(ev('Enter'), 'compare')).toBeNull();
  });

  it('normalises modifiers', () => {
    expect(keyName(ev('ArrowUp', { shiftKey: true }))).toBe('Shift+ArrowUp');
    expect(keyName(ev('K', { shiftKey: true }))).toBe('K');
    expect(keyName(ev('Z', { ctrlKey: true }))).toBe('Ctrl+z');
    expect(actionFor(ev('ArrowUp', { shiftKey: true }), 'rank')).toBe('move-up');
    expect(actionFor(ev('ArrowUp'), 'rank')).toBe('cursor-up');
  });

  it('has no two actions on one key in one stage', () => {
    expect(conflicts()).toEqual([]);
  });

  it('shows every action of a stage on screen, with a label', () => {
    for (const stage of ['compare', 'rank', 'rate', 'layout', 'flag']) {
      const shown = bindingsFor(stage);
      expect(shown.length).toBeGreaterThan(0);
      for (const b of shown) expect(b.label).toBeTruthy();
      const actions = new Set(BINDINGS.filter((b) => b.stages.includes(stage)).map((b) => b.action));
      // every non-folded binding appears
      const labels = shown.map((b) => b.label).join('|');
      for (const b of BINDINGS.filter((x) => x.stages.includes(stage) && !x.rating && !x.hidden)) {
        expect(labels).toContain(b.label);
      }
      expect(actions.size).toBeGreaterThan(0);
    }
    expect(bindingsFor('rate', { ratingLabels: { 1: 'unusable', 5: 'excellent' } })[0].label).toBe('rate (1 unusable … 5 excellent)');
  });
});
