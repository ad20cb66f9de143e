"""python manage.py round {open,recover,close,status,checkpoint} --project SLUG [...]

open: opens the next round and starts generation for the new masks (or --masks 1,2,3);
recover: sends the open round's hard cases back for more seeds, ranked (engine.rounds.recovery);
close: closes the open round and builds its SFT and DPO snapshots (Parquet) in this process;
status: one line per round; checkpoint: make a trained checkpoint current for the next round.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from engine.models import Project, Round
from engine.rounds import recovery, selectors, services
from modelzoo.models import Checkpoint


class Command(BaseCommand):
    help = "Open, close or inspect the rounds of a project."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        o = sub.add_parser("open")
        o.add_argument("--project", required=True)
        o.add_argument("--alpha", type=int, help="Quality threshold of the round (1-5).")
        o.add_argument("--masks", help="Comma-separated mask ids (default: masks without an item yet).")
        o.add_argument("--steps", type=int)
        o.add_argument("--candidates", type=int, help="Candidates per item (default: the project's N).")
        o.add_argument("--no-generate", action="store_true")
        o.add_argument("--ranker", type=int, help="Pre-rank with this ranker checkpoint: generate --generate "
                                                  "candidates per item, show its top --shown and --random more.")
        o.add_argument("--generate", type=int, default=32)
        o.add_argument("--shown", type=int, default=6)
        o.add_argument("--random", type=int, default=2)
        r = sub.add_parser("recover")
        r.add_argument("--project", required=True)
        r.add_argument("--ranker", type=int, required=True, help="The ranker checkpoint that orders the new seeds.")
        r.add_argument("--generate", type=int, default=32, help="New seeds per hard case (M).")
        r.add_argument("--shown", type=int, default=6)
        r.add_argument("--random", type=int, default=2)
        r.add_argument("--items", help="Comma-separated hard-case item ids (default: every one waiting for an artist).")
        c = sub.add_parser("close")
        c.add_argument("--project", required=True)
        c.add_argument("--pairing", default=services.DEFAULT_PAIRING, choices=["recorded", "winner_beat", "ranking"])
        c.add_argument("--no-export", action="store_true")
        s = sub.add_parser("status")
        s.add_argument("--project", required=True)
        s.add_argument("--json", action="store_true")
        k = sub.add_parser("checkpoint")
        k.add_argument("--project", required=True)
        k.add_argument("--round", type=int, required=True)
        k.add_argument("--checkpoint", type=int, required=True)
        k.add_argument("--share", type=float, default=services.DEFAULT_NEW_SHARE)

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project '{opts['project']}'.")
        try:
            getattr(self, "_" + opts["action"])(project, opts)
        except EngineError as exc:
            raise CommandError(exc.message) from None

    def _open(self, project, opts):
        masks = [int(m) for m in opts["masks"].split(",")] if opts["masks"] else None
        rnd = services.round_open(project=project, quality_threshold=opts["alpha"], mask_ids=masks,
                                  generate=not opts["no_generate"], steps=opts["steps"],
                                  candidates_per_item=opts["candidates"],
                                  pre_rank={"ranker": opts["ranker"], "generate": opts["generate"],
                                            "shown": opts["shown"], "random": opts["random"]} if opts["ranker"] else None)
        st = selectors.round_status(round=rnd)
        self.stdout.write(f"round {rnd.index} open: alpha {rnd.quality_threshold}, {st['items']} items generating "
                          f"with mix {rnd.mix}")

    def _recover(self, project, opts):
        items = [int(i) for i in opts["items"].split(",")] if opts["items"] else None
        job = recovery.hard_cases_recover(project=project, item_ids=items, pre_rank={
            "ranker": opts["ranker"], "generate": opts["generate"], "shown": opts["shown"], "random": opts["random"]})
        self.stdout.write(f"generation job {job.pk}: {job.total_items} hard cases get {opts['generate']} new seeds "
                          f"each, ranked; annotators see {job.candidates_per_item} of each")

    def _close(self, project, opts):
        rnd = project.rounds.filter(state=Round.State.OPEN).order_by("-index").first()
        if rnd is None:
            raise CommandError(f"Project '{project.slug}' has no open round.")
        rnd = services.round_close(round=rnd, export=not opts["no_export"], pairing=opts["pairing"])
        st = selectors.round_status(round=rnd)
        self.stdout.write(f"round {rnd.index} closed: SFT snapshot {st['sft_snapshot']} ({st['sft_rows']} rows), "
                          f"DPO snapshot {st['dpo_snapshot']} ({st['dpo_rows']} pairs)")

    def _status(self, project, opts):
        rows = selectors.rounds_status(project=project)
        if opts["json"]:
            self.stdout.write(json.dumps(rows, default=str, indent=2))
            return
        self.stdout.write(f"{'round':>5} {'state':>7} {'alpha':>5} {'items':>6} {'judged':>7} {'accept':>7} "
                          f"{'hard':>6} {'recov':>7} {'sft':>5} {'dpo':>5}  checkpoint produced")
        for r in rows:
            cp = r["checkpoint_produced"]
            ev = (cp or {}).get("evaluation") or {}
            cps = "-" if cp is None else f"{cp['name']} (vIoU {ev.get('voxel_iou@64', float('nan')):.3f})"
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            rec = r["hard_case_recovery"]
            recovered = f"{rec['recovered']}/{rec['sent']}" if rec["sent"] else "-"
            self.stdout.write(f"{r['index']:>5} {r['state']:>7} {r['quality_threshold']:>5} {r['items']:>6} "
                              f"{r['judgements']:>7} {fmt(r['acceptance_rate']):>7} {fmt(r['hard_case_rate']):>6} "
                              f"{recovered:>7} {r['sft_snapshot'] or '-':>5} {r['dpo_snapshot'] or '-':>5}  {cps}")

    def _checkpoint(self, project, opts):
        checkpoint = Checkpoint.objects.filter(pk=opts["checkpoint"]).first()
        if checkpoint is None:
            raise CommandError(f"No checkpoint {opts['checkpoint']}.")
        rnd = services.round_checkpoint_set(round=services.round_get(project=project, index=opts["round"]),
                                            checkpoint=checkpoint, share=opts["share"])
        self.stdout.write(f"round {rnd.index}: {checkpoint} is current at share {opts['share']}")
