"""The check that the engine's explicit state machines share (snapshots, training runs): each
keeps its table of allowed moves and its one function that moves a row; this says no."""
from __future__ import annotations

from collections.abc import Mapping

from engine.errors import Conflict


def transition_check(allowed: Mapping[str, set[str]], *, current: str, to: str, what: str, code: str) -> None:
    """Raise Conflict (409 `code`) unless state `to` may follow `current` in `allowed`."""
    if to not in allowed[current]:
        raise Conflict(f"{what} is {current}; it cannot become {to}.", code=code)


def job_lifecycle(*, pending: str, working: str, done: str, failed: str) -> dict[str, set[str]]:
    """The allowed moves of a background job's row (a snapshot build, a training run): pending,
    then working (again when a redelivered task resumes), then done or failed; a failed job may
    work again; done is final."""
    return {pending: {working, failed}, working: {done, failed, working}, failed: {working}, done: set()}
