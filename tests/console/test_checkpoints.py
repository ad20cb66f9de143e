"""The checkpoints page: the lineage tree, offline metrics beside Elo, the mix, training runs with
their loss curves (live from a run's progress, then from the trained checkpoint's history)."""
from __future__ import annotations

import json
import re

import pytest

from engine.models import TrainingRun
from modelzoo import services as mz
from tests.stats.conftest import world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def test_registry_draws_the_lineage_and_puts_metrics_beside_elo(client, world):  # noqa: F811
    project, ck1, ck2 = world["project"], world["ck1"], world["ck2"]
    mz.project_mix_set(project=project, mix=[(ck1, 1.0), (ck2, 3.0)])
    client.force_login(world["lead"])
    page = client.get(f"/console/projects/{project.slug}/checkpoints/").content.decode()
    lineage = page[page.index('<div class="lineage"'):page.index("</svg>")]
    # ck2 is ck1's child: one edge, ck2's node right of ck1's.
    assert lineage.count('class="edge"') == 1
    x1 = int(re.search(rf'translate\((\d+),\d+\)" id="lineage-{ck1.pk}"', lineage).group(1))
    x2 = int(re.search(rf'translate\((\d+),\d+\)" id="lineage-{ck2.pk}"', lineage).group(1))
    assert x2 > x1
    row = page[page.index(f'id="checkpoint-{ck1.pk}"'):]
    row = row[:row.index("</tr>")]
    assert "0.310" in row and "0.420" in row  # F@0.01 and vIoU from its evaluation
    assert "anchor" in row  # the bootstrap of the lineage anchors the Elo scale at 1000
    assert re.search(r"<strong>1000\.0</strong>", row)
    assert "25%" in row  # its share of the mix, 1 of 4


def test_training_runs_show_their_live_loss_curve(client, world):  # noqa: F811
    project = world["project"]
    run = TrainingRun.objects.create(project=project, stage="sft", parent=world["ck1"], state=TrainingRun.State.RUNNING,
                                     progress={"stage": "sft", "step": 60, "steps": 200, "fraction": 0.3,
                                               "losses": {"sft": [{"step": 0, "loss": 1.2}, {"step": 25, "loss": 0.9},
                                                                  {"step": 50, "loss": 0.7}]}})
    client.force_login(world["lead"])
    page = client.get(f"/console/projects/{project.slug}/checkpoints/").content.decode()
    curves = json.loads(re.search(r'<script id="run-curves" type="application/json">(.*?)</script>', page).group(1))
    assert curves == {str(run.pk): {"sft": [[0, 1.2], [25, 0.9], [50, 0.7]]}}
    assert "sft step 60 / 200" in page
    api = client.get(f"/api/v1/projects/{project.slug}/training-runs/").json()
    assert api[0]["progress"]["losses"]["sft"][-1] == {"step": 50, "loss": 0.7}


def test_annotators_do_not_see_the_registry(client, world):  # noqa: F811
    client.force_login(world["alice"])
    assert client.get(f"/console/projects/{world['project'].slug}/checkpoints/").status_code == 403
