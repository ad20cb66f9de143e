"""Issue 14, done means: one item whose candidates come from three backends at once (the built-in
model's mesh and splat, a TRELLIS.2-style textured GLB, a SAM 3D-style splat with its mesh) is
generated, ranked in the browser with the keyboard alone, exported and loaded with `datasets`.

The TRELLIS.2 and SAM 3D Objects backends are their adapters over stand-ins that return what the
real pipelines return (modelzoo/generators/standins.py, docs/generators.md): the real models need a
GPU and gated weights. Screenshot: tests/artifacts/three-backends-compare.png.
"""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from annotation.models import ItemState, Judgement
from engine.exports import services as export_services
from engine.models import ObjectMask, Role
from modelzoo import services as modelzoo_services
from modelzoo.models import Candidate
from tests.browser.conftest import ARTIFACTS, login
from tests.browser.test_workbench import lit_pixels, wait_rendered
from tests.exports.conftest import download
from tests.modelzoo_engine.conftest import photo_with_masks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_item_of_three_backends_judged_by_keyboard_exported_and_loaded(live_server, page, project, member,
                                                                         frontend_built, tmp_path):
    import datasets
    from plyfile import PlyData

    # Generate: 6 candidates, 2 from each backend, for the photo's one object.
    photo_with_masks(project, seed=3, n_masks=1)
    bootstrap, _ = modelzoo_services.checkpoint_register(name="builtin", version="bootstrap", backend="builtin",
                                                         data=modelzoo_services.BOOTSTRAP_FILE.read_bytes())
    modelzoo_services.project_mix_set(project=project, mix=[(bootstrap, 1.0)])
    mask = ObjectMask.objects.get(image__project=project)
    call_command("generate", project=project.slug, masks=[mask.pk], candidates=6, with_standins=True, inline=True)
    backend_of = dict(Candidate.objects.filter(item__mask=mask).values_list("pk", "checkpoint__backend"))
    assert sorted(backend_of.values()) == ["builtin", "builtin", "sam3d_objects", "sam3d_objects",
                                           "trellis2", "trellis2"]

    # Rank in the browser, keys only: the textured TRELLIS.2-style candidate wins every comparison it is in.
    annotator = member(Role.ANNOTATOR)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    for k in range(1, 6):
        wait_rendered(page)
        left, right = page.evaluate("window.workbench._pair()")
        if k == 1:
            page.screenshot(path=str(ARTIFACTS / "three-backends-compare.png"))
            for side in ("left", "right"):
                share, _ = lit_pixels(page.locator(f".wb-view[data-view={side}]").screenshot())
                assert share > 0.02, f"the {side} candidate ({backend_of[[left, right][side == 'right']]}) is not drawn"
        page.keyboard.press("3" if backend_of[right] == "trellis2" and backend_of[left] != "trellis2" else "1")
        page.wait_for_function(f"() => window.workbench.current.tournament.history.length === {k}")
    page.wait_for_selector("#workbench[data-stage=rate]")
    page.keyboard.press("5")
    page.wait_for_selector(".wb-rate .rating.chosen")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.done === '1'")
    assert not errors, errors
    judgement = Judgement.objects.get(item__mask=mask)
    assert backend_of[judgement.winner_id] == "trellis2" and judgement.rating == 5
    assert judgement.item.state == ItemState.DONE

    # Export the preference pairs and load them with `datasets`: one pair per comparison (the textured
    # winner against what it met; before it came up, whichever of the others won), meshes as the Mesh
    # feature, textured where TRELLIS.2 made them, every splat as its PLY bytes.
    snapshot, _ = export_services.snapshot_define(project=project, kind="dpo", format="parquet", assets="embedded")
    snapshot = export_services.snapshot_build(snapshot_id=snapshot.pk)
    folder = download(snapshot, tmp_path / "dpo")
    pairs = datasets.load_dataset("parquet", data_files=str(folder / "data" / "train-*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf"))
    assert pairs.num_rows == snapshot.rows_total >= 1
    assert isinstance(pairs.features["chosen_mesh"], datasets.Mesh)
    assert judgement.winner_id in pairs.unique("chosen_candidate_id")
    rejected_backends = set()
    for row in pairs:
        for side in ("chosen", "rejected"):
            backend = backend_of[row[f"{side}_candidate_id"]]
            assert row[f"{side}_textured"] is (backend == "trellis2") and row[f"{side}_mesh"] is not None
            if backend == "trellis2":
                assert row[f"{side}_splat"] is None  # TRELLIS.2 makes no splat
            else:  # the built-in model and SAM 3D make one
                count = PlyData.read(io.BytesIO(row[f"{side}_splat"]["bytes"]))["vertex"].count
                assert count == row[f"{side}_num_gaussians"] > 0
        rejected_backends.add(backend_of[row["rejected_candidate_id"]])
    assert rejected_backends & {"builtin", "sam3d_objects"}, rejected_backends  # losers with splats are in
