"""python manage.py simulate --rounds K --annotators M [--items N] [...]

The simulated data engine (see engine/rounds/simulation.py and docs/loop.md): a project of
synthetic objects with known ground truth, annotators working over HTTP against gunicorn on
127.0.0.1, generation on a real Celery worker (queue "model"; --inline-generation runs the
same task function in this process), SFT + DPO training and offline evaluation every round.
Prints a table per round; the last line is one JSON object (viou_by_round, chamfer_by_round, ...).

Small setting (2 rounds in under 30 minutes on 2 cores): the defaults.
"""
import json
import signal
import time

import torch
from django.core.management.base import BaseCommand, CommandError

from engine.rounds.simulation import Setting, Simulation
from modelzoo.synth.shapes import DOMAINS


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Command(BaseCommand):
    help = "Run the whole loop on synthetic objects with simulated annotators."

    def add_arguments(self, parser):
        d = Setting()
        parser.add_argument("--rounds", type=int, default=d.rounds)
        parser.add_argument("--annotators", type=int, default=d.annotators)
        parser.add_argument("--items", type=int, default=d.items_per_round, help="New objects per round.")
        parser.add_argument("--candidates", type=int, default=d.candidates, help="Candidates per object (N).")
        parser.add_argument("--noise", type=float, default=d.noise,
                            help="Probability that an annotator flips a strict preference (and a rating by 1).")
        parser.add_argument("--equal-margin", type=float, default=d.equal_margin,
                            help="Voxel IoU difference under which an annotator answers 'equal'.")
        parser.add_argument("--alpha", type=int, default=d.alpha)
        parser.add_argument("--share", type=float, default=d.new_share, help="Share of the newest checkpoint.")
        parser.add_argument("--eval-n", type=int, default=d.eval_n, help="Gold scenes for the offline metrics.")
        parser.add_argument("--no-rating-round", action="store_true",
                            help="Skip the last generate+annotate round that rates the last checkpoint.")
        parser.add_argument("--rating-items", type=int, default=d.rating_items,
                            help="Objects in the rating round (0: as many as a training round); every checkpoint "
                                 "of the loop gets an equal share of its candidates.")
        parser.add_argument("--cumulative", action="store_true",
                            help="Train round r on the data of rounds 1..r (default: round r only).")
        parser.add_argument("--from-start", action="store_true",
                            help="Train every round from the start checkpoint (with --cumulative: on all data so far).")
        parser.add_argument("--inline-generation", action="store_true",
                            help="Generate in this process instead of a Celery worker.")
        parser.add_argument("--checkpoint", help="Start from this .pt instead of the committed bootstrap.")
        parser.add_argument("--project", help="Project slug (default sim-<time>).")
        parser.add_argument("--base-url", help="Use this running server instead of starting gunicorn.")
        parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                            help="Trainer hyper-parameter, e.g. --hp beta=500 --hp sft_steps=300.")
        parser.add_argument("--domain", default=d.domain, choices=sorted(DOMAINS),
                            help="Shape distribution of the objects (the held-out gold set of the same domain "
                                 "gives the table's metrics; the pretraining gold set is shown beside).")
        parser.add_argument("--stage", default=d.stage, choices=["dpo", "both", "sft"],
                            help="What each round trains (default dpo; docs/loop.md says why).")
        parser.add_argument("--artists", type=int, default=d.artists,
                            help="Simulated artists who model every hard case through the artist API (0: none).")
        parser.add_argument("--retrieval-share", type=float, default=d.retrieval_share,
                            help="Share of the candidates from the retrieval backend (0: not in the mix).")
        parser.add_argument("--retrieval-library", type=int, default=d.retrieval_library,
                            help="Shapes in the retrieval backend's library (the project's domain).")
        parser.add_argument("--sft-sources", default=d.sft_sources,
                            help="SFT rows that train (stage both/sft): all, or a comma list of artist, retrieval, model.")
        parser.add_argument("--no-primitives-eval", action="store_true",
                            help="Score checkpoints on the project domain's gold set only (half the evaluation time).")
        parser.add_argument("--pre-rank", type=int, default=d.pre_rank, metavar="M",
                            help="After each round, train a ranker on its pairs; the next round generates M "
                                 "candidates an object and shows the ranker's top N-2 and 2 drawn at random (0: off).")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        # SIGTERM unwinds like Ctrl-C, so the server and worker this command started are stopped.
        signal.signal(signal.SIGTERM, _interrupt)

        if opts["rating_items"] < 0:
            raise CommandError(f"--rating-items {opts['rating_items']}: give 0 (as many as a round) or more objects.")
        if opts["pre_rank"] and opts["pre_rank"] < opts["candidates"]:
            raise CommandError(f"--pre-rank {opts['pre_rank']}: generate at least as many candidates an object as "
                               f"annotators see (--candidates {opts['candidates']}).")
        torch.set_num_threads(2)
        hp = {}
        for spec in opts["hp"]:
            name, _, raw = spec.partition("=")
            hp[name] = json.loads(raw)
        setting = Setting(rounds=opts["rounds"], annotators=opts["annotators"], items_per_round=opts["items"],
                          candidates=opts["candidates"], noise=opts["noise"], equal_margin=opts["equal_margin"],
                          alpha=opts["alpha"], new_share=opts["share"], rating_round=not opts["no_rating_round"],
                          rating_items=opts["rating_items"],
                          eval_n=opts["eval_n"], cumulative=opts["cumulative"], from_start=opts["from_start"], inline_generation=opts["inline_generation"], seed=opts["seed"],
                          domain=opts["domain"], stage=opts["stage"], hyperparameters=hp, artists=opts["artists"],
                          retrieval_share=opts["retrieval_share"], retrieval_library=opts["retrieval_library"],
                          sft_sources=opts["sft_sources"], pre_rank=opts["pre_rank"], eval_primitives=not opts["no_primitives_eval"])
        t0 = time.time()

        def log(msg):
            self.stdout.write(f"[{time.time() - t0:6.0f}s] {msg}")
            self.stdout.flush()

        out = Simulation(setting, slug=opts["project"], base_url=opts["base_url"],
                         checkpoint_path=opts["checkpoint"], log=log).run()
        self.stdout.write(out["table"])
        self.stdout.write(json.dumps(out["result"], default=str))
