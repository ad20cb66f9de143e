"""A small project with hand-computable figures (see the numbers in test_figures.py).

Day 2025-01-06 (UTC), two checkpoints (ck2 is ck1's child), two annotators:
  alice  i1 r1 10:05  20 s  rating 4  winner ck2   comparison ck1|ck2 right  3.0 s
  alice  i2 r1 10:40  40 s  rating 2  winner ck1   comparison ck1|ck2 left   5.0 s  gold, wrong
  alice  i4 r2 12:10  60 s  rating 5  winner ck2   comparison ck2|ck1 equal  1.0 s
  bob    i1 r1 10:30  30 s  rating 3  winner ck2   comparison ck2|ck1 left   2.0 s  gold, right
  bob    i3 r1 11:15 100 s  rating 4  winner ck1   comparison ck1|ck2 left   4.0 s  rejected by review
Round 1 alpha 3, round 2 alpha 4. Items: i1 done, i2 hard case, i3 ready, i4 done.
"""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

from annotation.models import Comparison, Item, ItemState, Judgement, Lease
from engine.stats import services
from modelzoo.models import GenerationJob, GenerationJobItem
from tests.annotation.factories import CandidateFactory, CheckpointFactory, ItemFactory, RoundFactory
from tests.engine.factories import MembershipFactory, UserFactory

DAY = dt.date(2025, 1, 6)
_keys = itertools.count()


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2025, 1, 6, hour, minute, tzinfo=dt.timezone.utc)


def judge(project, item, annotator, when, seconds, rating, winner, left, right, outcome, decided_ms, *,
          gold_correct=None, status=Judgement.Status.ACCEPTED):
    lease = Lease.objects.create(project=project, item=item, annotator=annotator, state=Lease.State.SUBMITTED,
                                 seed=1, order=[left.pk, right.pk], sides=[True], protocol="king_of_the_hill",
                                 created_at=when, expires_at=when + dt.timedelta(minutes=5), closed_at=when)
    j = Judgement.objects.create(
        project=project, item=item, annotator=annotator, lease=lease, key=f"k{next(_keys)}",
        protocol="king_of_the_hill", winner=winner, rating=rating,
        below_threshold=rating < item.round.quality_threshold, time_spent_ms=seconds * 1000,
        gold_correct=gold_correct, status=status, created_at=when)
    Comparison.objects.create(judgement=j, index=1, left=left, right=right, outcome=outcome, decided_ms=decided_ms)
    return j


@pytest.fixture
def world(project, member):
    project.quality_threshold = 3
    project.save(update_fields=["quality_threshold"])
    r1 = RoundFactory(project=project, index=1, quality_threshold=3)
    r2 = RoundFactory(project=project, index=2, quality_threshold=4)
    ck1 = CheckpointFactory(name="builtin", version="v1", evaluation={"model": {"chamfer": 0.05,
                            "fscore@0.01": 0.31, "voxel_iou@64": 0.42, "rotation_error_deg": 12.0}})
    ck2 = CheckpointFactory(name="builtin", version="v2", parent=ck1)
    alice = member("annotator", username="alice")
    bob = member("annotator", username="bob")
    lead = member("lead", username="lena")
    items, cands = {}, {}
    for name, rnd, state in (("i1", r1, ItemState.DONE), ("i2", r1, ItemState.HARD_CASE),
                             ("i3", r1, ItemState.READY), ("i4", r2, ItemState.DONE)):
        item = ItemFactory(project=project, round=rnd, state=state)
        items[name] = item
        cands[name] = (CandidateFactory(item=item, checkpoint=ck1), CandidateFactory(item=item, checkpoint=ck2))
    Item.objects.filter(pk=items["i2"].pk).update(is_gold=True)
    a1, a2 = cands["i1"]
    judge(project, items["i1"], alice, at(10, 5), 20, 4, a2, a1, a2, "right", 3000)
    b1, b2 = cands["i2"]
    judge(project, items["i2"], alice, at(10, 40), 40, 2, b1, b1, b2, "left", 5000, gold_correct=False)
    d1, d2 = cands["i4"]
    judge(project, items["i4"], alice, at(12, 10), 60, 5, d2, d2, d1, "equal", 1000)
    judge(project, items["i1"], bob, at(10, 30), 30, 3, a2, a2, a1, "left", 2000, gold_correct=True)
    c1, c2 = cands["i3"]
    judge(project, items["i3"], bob, at(11, 15), 100, 4, c1, c1, c2, "left", 4000,
          status=Judgement.Status.REJECTED)
    job = GenerationJob.objects.create(project=project, round=r1, steps=4, candidates_per_item=2, total_items=3,
                                       total_candidates=6, started_at=at(9, 0), finished_at=at(9, 2),
                                       state=GenerationJob.State.FINISHED)
    for name, state, done in (("i1", "done", 2), ("i2", "done", 2), ("i3", "failed", 1)):
        GenerationJobItem.objects.create(job=job, item=items[name], plan=[], state=state, done=done)
    services.rollups_refresh(project_id=project.pk)
    return {"project": project, "alice": alice, "bob": bob, "lead": lead, "ck1": ck1, "ck2": ck2,
            "r1": r1, "r2": r2, "items": items}


@pytest.fixture
def other_role(project):
    def make(role):
        user = UserFactory()
        MembershipFactory(project=project, user=user, role=role)
        return user
    return make
