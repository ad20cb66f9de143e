"""python manage.py ranker --snapshot ID [--epochs 40 --held-out 0.2 ...]

Trains the ranker (`modelzoo.ranker`: Bradley-Terry on the photo crop and mask and the candidate's
view and shape) on a built DPO snapshot, in this process, and registers it as a checkpoint of role
"ranker" with the snapshot as its lineage and its held-out agreement with the annotators.
"""
import dataclasses

from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from engine.exports.models import Snapshot
from engine.rounds.ranker import ranker_train


class Command(BaseCommand):
    help = "Train a ranker (reward model) on a DPO snapshot and register it."

    def add_arguments(self, parser):
        from modelzoo.ranker import RankerHyperParameters
        from modelzoo.ranker.train import argument_type

        parser.add_argument("--snapshot", type=int, required=True, help="a built DPO snapshot (Parquet)")
        for f in dataclasses.fields(RankerHyperParameters):
            parser.add_argument("--" + f.name.replace("_", "-"), type=argument_type(f.default), default=None)

    def handle(self, *args, **opts):
        from modelzoo.ranker import RankerHyperParameters

        snap = Snapshot.objects.select_related("project").filter(pk=opts["snapshot"]).first()
        if snap is None:
            raise CommandError(f"No snapshot {opts['snapshot']}.")
        hp = {f.name: opts[f.name] for f in dataclasses.fields(RankerHyperParameters) if opts[f.name] is not None}
        try:
            cp = ranker_train(project=snap.project, dpo_snapshot_id=snap.pk, hyperparameters=hp,
                              log_fn=lambda m: self.stdout.write(m))
        except EngineError as exc:
            raise CommandError(str(exc)) from None
        ev = cp.evaluation
        self.stdout.write(f"registered {cp} (id {cp.pk}): held-out agreement {ev['held_out_agreement']} "
                          f"on {ev['held_out_pairs']} pairs")
