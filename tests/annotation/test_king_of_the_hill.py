"""annotation.king_of_the_hill: the run a client builds from a next-item payload."""
import pytest

from annotation.king_of_the_hill import run_build

ITEM = {"candidates": [{"id": 10}, {"id": 20}, {"id": 30}, {"id": 40}], "sides": [True, False, True]}


def test_the_king_keeps_the_side_the_lease_gives_it_and_the_last_king_wins():
    run = run_build(ITEM, lambda m: m.challenger if m.challenger == 20 else m.king, decided_ms=700)
    assert run.comparisons == [
        {"left": 10, "right": 20, "outcome": "right", "decided_ms": 700},  # king 10 on the left, 20 wins
        {"left": 30, "right": 20, "outcome": "right", "decided_ms": 700},  # king 20 on the right, keeps it
        {"left": 20, "right": 40, "outcome": "left", "decided_ms": 700},
    ]
    assert run.winner == 20


def test_equal_keeps_the_king_and_decided_ms_may_be_drawn_per_decision():
    times = iter([1, 2, 3])
    run = run_build(ITEM, lambda m: None, decided_ms=lambda: next(times))
    assert [c["outcome"] for c in run.comparisons] == ["equal"] * 3
    assert [c["decided_ms"] for c in run.comparisons] == [1, 2, 3] and run.winner == 10


def test_a_single_candidate_is_its_own_winner_and_a_choice_off_screen_is_refused():
    assert run_build({"candidates": [{"id": 5}], "sides": []}, lambda m: None) == ([], 5)
    with pytest.raises(ValueError):
        run_build(ITEM, lambda m: 99)
