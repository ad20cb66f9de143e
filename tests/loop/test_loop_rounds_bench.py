"""bench/loop_rounds.py tiny (docs/loop.md's three-round table comes from its full run): three
rounds of the recipe it runs by default (artists, retrieval, cumulative SFT with the decoder
stage, then DPO) and a
rating round, through `manage.py simulate` on a database of its own, then the issue's targets."""
from __future__ import annotations

import pytest
from django.db import connection

from tests.subprocesses import bench_run

pytestmark = pytest.mark.django_db

TINY = ("--rounds", "3", "--items", "4", "--candidates", "3", "--eval-n", "2", "--rating-items", "5",
        "--hp", "sft_steps=3", "--hp", "dpo_steps=3", "--hp", "sft_batch=4", "--hp", "dpo_batch=4",
        "--hp", "decoder_steps=3", "--hp", "decoder_batch=4")


def test_three_rounds_of_the_recipe_are_measured_against_the_targets():
    if connection.vendor != "postgresql":
        pytest.skip("the bench creates a PostgreSQL database of its own")
    name = f"{connection.settings_dict['NAME']}_bench_loop"
    lines, result = bench_run("loop_rounds.py", *TINY, "--database", name, bench_db=name)

    # the bootstrap and three trained checkpoints, each scored on the same gold scenes
    assert len(result["viou_by_round"]) == 4 and len(result["chamfer_by_round"]) == 4
    assert all(0 <= v <= 1 for v in result["viou_by_round"])
    assert [p["round"] for p in result["paired_vs_previous_round"]] == [1, 2, 3]
    # every round's checkpoint compared directly with the bootstrap on the gold scenes (2 x 4 x 4)
    assert len(result["win_rate_vs_bootstrap_by_round"]) == 3 and len(result["elo_by_round"]) == 4
    assert result["comparisons_vs_bootstrap_by_round"] == [32, 32, 32]
    # the recipe ran: artists on the hard cases, retrieval in the mix, SFT on all rounds' targets
    setting = result["setting"]
    assert setting["artists"] == 1 and setting["retrieval_share"] == 0.25 and setting["cumulative"]
    assert setting["alpha"] == 4 and setting["rating_items"] == 5
    assert setting["stage"] == "both" and setting["sft_sources"] == "all"
    assert setting["hyperparameters"]["sft_steps"] == 3 and setting["hyperparameters"]["dpo_lr"] == 2e-5
    assert setting["hyperparameters"]["decoder_steps"] == 3
    assert setting["hyperparameters"]["sft_views"] == 8 and setting["hyperparameters"]["train_image_encoder"]
    # the real shapes among the SFT targets were also seen in new renders: more examples than rows
    assert result["sft_examples_by_round"][-1] > 4 * 3
    assert result["judgements_by_round"] == [4, 4, 4, 5]  # three training rounds and the rating round
    assert set(result["targets"]) == {"viou_better_every_round", "chamfer_better_every_round",
                                      "last_round_win_rate_vs_bootstrap_at_least_0.67", "elo_rising_every_round"}
    assert result["seconds"] > 0
    assert any(line.startswith("viou_better_every_round") for line in lines)
