"""python manage.py train --snapshot ID [--snapshot ID] [--stage sft|dpo|both] [--checkpoint ID]

Trains the built-in model with the reference trainer (`modelzoo.training`) in this process,
registers the checkpoint with its lineage, and evaluates it on the synthetic gold set.
With one snapshot of a round and --stage both, the round's other snapshot is used too.
--enqueue hands the run to a Celery worker on queue "model" instead (progress on the run).
"""
import dataclasses
import json

import torch
from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from engine.exports.models import Snapshot
from engine.models import Round
from engine.rounds import services as round_services
from engine.rounds import train
from modelzoo.training import HyperParameters


def _arg_type(default):
    if isinstance(default, bool):
        return lambda v: str(v).lower() in ("1", "true", "yes", "on")
    return type(default)


class Command(BaseCommand):
    help = "Train SFT and/or DPO from exported snapshots and register the new checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, action="append", required=True,
                            help="Snapshot id (SFT or DPO); give both for --stage both.")
        parser.add_argument("--stage", choices=["sft", "dpo", "both"], default="both")
        parser.add_argument("--checkpoint", type=int, help="Parent checkpoint id (default: newest in the mix).")
        parser.add_argument("--make-current", action="store_true",
                            help="Make the result current for the project's next round.")
        parser.add_argument("--share", type=float, default=round_services.DEFAULT_NEW_SHARE)
        parser.add_argument("--eval-n", type=int, default=train.EVAL_GOLD_SIZE)
        parser.add_argument("--no-eval", action="store_true")
        parser.add_argument("--enqueue", action="store_true", help="Run on a Celery worker (queue model).")
        parser.add_argument("--threads", type=int, default=2)
        for f in dataclasses.fields(HyperParameters):
            parser.add_argument("--" + f.name.replace("_", "-"), type=_arg_type(f.default), default=None)

    def handle(self, *args, **opts):
        torch.set_num_threads(opts["threads"])
        snaps = list(Snapshot.objects.filter(pk__in=opts["snapshot"]).select_related("project"))
        missing = set(opts["snapshot"]) - {s.pk for s in snaps}
        if missing:
            raise CommandError(f"No snapshot(s) {sorted(missing)}.")
        projects = {s.project_id for s in snaps}
        if len(projects) > 1:
            raise CommandError("The snapshots belong to different projects.")
        project = snaps[0].project
        by_kind: dict[str, list] = {}
        for s in snaps:
            by_kind.setdefault(s.kind, []).append(s)
        if any(len(v) > 1 for v in by_kind.values()):
            raise CommandError("Give at most one SFT and one DPO snapshot.")
        rnd = Round.objects.filter(project=project).filter(
            sft_snapshot__in=snaps).first() or Round.objects.filter(project=project, dpo_snapshot__in=snaps).first()
        sft = by_kind.get("sft", [None])[0]
        dpo = by_kind.get("dpo", [None])[0]
        if opts["stage"] == "both" and rnd is not None:
            sft = sft or rnd.sft_snapshot
            dpo = dpo or rnd.dpo_snapshot
        hp = {f.name: opts[f.name] for f in dataclasses.fields(HyperParameters) if opts.get(f.name) is not None}
        try:
            run = train.training_run_create(
                project=project, stage=opts["stage"], sft_snapshot_id=sft.pk if sft else None,
                dpo_snapshot_id=dpo.pk if dpo else None, parent=opts["checkpoint"], round=rnd, hyperparameters=hp)
            if opts["enqueue"]:
                train.training_run_enqueue(run=run)
                self.stdout.write(f"training run {run.pk} queued on 'model'")
                return
            run = train.training_run_execute(run_id=run.pk, evaluate=not opts["no_eval"], eval_n=opts["eval_n"],
                                                log_fn=lambda m: self.stdout.write(m))
            if opts["make_current"]:
                round_services.round_checkpoint_set(round=rnd, checkpoint=run.checkpoint, share=opts["share"]) \
                    if rnd else None
        except EngineError as exc:
            raise CommandError(exc.message) from None
        cp = run.checkpoint
        self.stdout.write(f"registered {cp} (id {cp.pk}, parent {cp.parent_id})")
        self.stdout.write(json.dumps({"checkpoint": cp.pk, "lineage": cp.lineage,
                                      "evaluation": (cp.evaluation or {}).get("model")}, default=str))
