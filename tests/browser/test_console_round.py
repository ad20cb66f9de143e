"""A whole round in the console, in a real browser, by a lead who never touches the command line:
create a project, add annotators, import a zip, open a round, follow its generation (retry a failed
item), review a judgement with its 3D replay and reject it, close the round, download the DPO
snapshot and load it with `datasets`, upload a checkpoint and set the mix, train on the round and
follow the run's loss curves. Screenshots of every page go to tests/artifacts/console-*.png.

What no browser does runs in the test, as the workers and clients would: the import, generation,
snapshot and training tasks are called in this process (no Celery worker is started: it would cost a minute of
torch import), the annotators judge through the API, and beat's rollup refresh is called once.
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, login
from tests.browser.test_workbench import lit_pixels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PHOTOS = 2  # one object each; N = 3 candidates at 1 sampling step


def _png(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def photos_zip() -> bytes:
    """A folder-layout zip (images/ + masks/<stem>/<label>.png) of synthetic render-paste photos."""
    from modelzoo.synth.scene import sample_scene

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for k in range(PHOTOS):
            sample = sample_scene(31 + k, size=160)
            archive.writestr(f"images/photo{k}.png", _png(sample.image))
            archive.writestr(f"masks/photo{k}/object.png", _png((sample.mask > 0).astype(np.uint8) * 255))
    return buf.getvalue()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def run_generation(job_items) -> None:
    """What the model worker does with each enqueued task."""
    from engine.rounds.tasks import generate_item

    for pk in job_items:
        generate_item.run(pk)


def judge_through_the_api(slug: str, annotator, *, rating: int) -> int:
    """One annotator takes the next item and judges it by the king-of-the-hill rule: the challenger
    with the smaller id wins (an arbitrary, deterministic judge). Returns the judgement's id."""
    from rest_framework.test import APIClient

    from annotation.king_of_the_hill import run_build

    client = APIClient()
    client.force_authenticate(annotator)
    payload = client.post(f"/api/v1/projects/{slug}/next-item", {}, format="json").json()
    run = run_build(payload["item"], lambda m: min(m.king, m.challenger), decided_ms=1800)
    r = client.post(f"/api/v1/items/{payload['item']['id']}/judgements", {
        "lease": payload["lease"]["id"], "key": f"{annotator.username}-{payload['item']['id']}",
        "comparisons": run.comparisons, "winner": run.winner, "rating": rating, "time_spent_ms": 9000,
    }, format="json")
    assert r.status_code == 201, r.content
    return r.json()["id"]


def test_a_lead_runs_a_whole_round_in_the_console(live_server, page, frontend_built, tmp_path, settings):
    from annotation.models import Judgement
    from engine.exports import services as export_services
    from engine.exports.models import Snapshot
    from engine.models import Project, Round
    from engine.rounds import generate
    from engine.stats import services as stats_services
    from modelzoo import services as zoo
    from modelzoo.models import GenerationJobItem, ProjectCheckpoint
    from tests.engine.factories import UserFactory
    from tests.modelzoo_engine.conftest import weights_variant

    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = False
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    lead = UserFactory(username="lena", is_staff=True)  # staff create projects (PROJECT_CREATORS)
    annotators = [UserFactory(username="ann"), UserFactory(username="bo")]
    bootstrap, _ = zoo.bootstrap_register(make_current=False)  # `make run` registers it: public to every project

    # 1. Create the project.
    login(page, live_server, lead.username, "/console/projects/")
    page.fill("#id_name", "Chairs")
    page.fill("#id_slug", "chairs")
    page.fill("#id_candidates_per_item", "3")
    page.fill("#id_overlap", "1")
    page.fill("#id_gold_rate", "0")
    shot(page, "projects")
    page.click("#project-create-submit")
    page.wait_for_url("**/console/projects/chairs/?created=1")
    project = Project.objects.get(slug="chairs")
    assert project.candidates_per_item == 3

    # 2. Its annotators.
    for annotator in annotators:
        page.fill("#id_member_username", annotator.username)
        page.select_option("#id_member_role", "annotator")
        page.click("#member-add-submit")
        page.wait_for_selector(f'tr[data-username="{annotator.username}"]')
    shot(page, "project")

    # 3. Import a zip of photos with PNG masks.
    import_zip(page, live_server, project, tmp_path)
    assert project.images.count() == PHOTOS

    # 4. Open round 1: alpha 3, N = 3, one sampling step, the bootstrap checkpoint.
    page.goto(f"{live_server.url}/console/projects/chairs/rounds/")
    page.fill("#id_quality_threshold", "3")
    page.fill("#id_steps", "1")
    page.check(f'#round-mix tr[data-checkpoint="{bootstrap.pk}"] .mix-use')
    shot(page, "rounds")
    page.keyboard.press("o")
    page.wait_for_url("**/console/projects/chairs/rounds/1/?opened=1")
    assert list(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", flat=True)) == [
        bootstrap.pk]

    # 5. Generation, live: one item fails on the worker, the lead retries it.
    job_items = list(GenerationJobItem.objects.filter(job__project=project).order_by("pk").values_list("pk", flat=True))
    assert len(job_items) == PHOTOS
    generate.job_item_fail(job_item_id=job_items[0], reason="the GPU worker ran out of memory")
    run_generation(job_items[1:])
    page.wait_for_selector(".job .retry")
    assert "the GPU worker ran out of memory" in page.inner_text("#generation-jobs")
    shot(page, "round-generating")
    page.click(".job .retry")
    page.wait_for_function("() => document.querySelectorAll('.job').length === 2")
    retried = GenerationJobItem.objects.filter(job__project=project, state=GenerationJobItem.State.PENDING)
    run_generation(retried.values_list("pk", flat=True))
    page.wait_for_function("() => document.getElementById('generation').dataset.live === '0'")
    newest = page.locator(".job").first
    assert newest.locator(".figures .done").inner_text() == "3 / 3" and newest.get_attribute("data-state") == "finished"
    shot(page, "round-generated")

    # 6. The annotators judge through the API; beat folds the judgements into the rollups.
    judgement_ids = [judge_through_the_api("chairs", a, rating=4) for a in annotators]
    stats_services.rollups_refresh(project_id=project.pk)

    # 7. Review: the figures per annotator, then one judgement replayed in 3D, then rejected.
    page.keyboard.press("v")  # the navigation's key for Review
    page.wait_for_url("**/console/projects/chairs/review/")
    assert "ann" in page.inner_text("#annotator-table") and "bo" in page.inner_text("#annotator-table")
    shot(page, "review")
    target = judgement_ids[0]
    page.click(f'tr[data-judgement="{target}"] .replay-link')
    page.wait_for_selector("#replay[data-ready='1']")
    page.wait_for_function("() => document.getElementById('replay-stage').dataset.rendered")
    judgement = Judgement.objects.get(pk=target)
    comparisons = list(judgement.comparisons.order_by("index"))
    assert page.inner_text("#replay-steps").count("comparison") == len(comparisons) == 2
    first = comparisons[0]
    assert page.evaluate("document.getElementById('replay-stage').dataset.rendered") == f"{first.left_id},{first.right_id}"
    for side in ("left", "right"):
        share, _ = lit_pixels(page.locator(f"#replay-stage [data-view={side}]").screenshot())
        assert share > 0.02, f"the {side} candidate of the replay is not drawn ({share:.3f})"
    assert "decided in 1.8 s" in page.inner_text("#replay-caption")
    shot(page, "replay-comparison")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#replay[data-step='comparison-2']")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#replay[data-step='winner']")
    assert f"candidate {judgement.winner_id}" in page.inner_text("#replay-caption")
    assert "rated 4" in page.inner_text("#replay-caption")
    page.keyboard.press("End")
    page.wait_for_function("() => document.getElementById('replay-stage').dataset.layoutRendered === '1'")
    shot(page, "replay-layout")
    page.fill("#replay-reason", "winner floats above the table")
    page.click("#replay-reject")
    page.wait_for_function("() => document.getElementById('judgement-status').textContent === 'rejected'")
    judgement.refresh_from_db()
    assert judgement.status == Judgement.Status.REJECTED and judgement.review_reason == "winner floats above the table"
    assert judgement.reviewed_by == lead
    shot(page, "replay-rejected")
    page.keyboard.press("g")  # the item becomes gold, its answer the winner
    page.wait_for_selector("#replay-candidates figure.gold.winner")
    item = judgement.item
    item.refresh_from_db()
    assert item.is_gold and item.gold_candidate_id == judgement.winner_id

    # 8. Close the round; its snapshots are built by the export task (called here, as the worker would).
    page.goto(f"{live_server.url}/console/projects/chairs/rounds/1/")
    page.select_option("#id_pairing", "winner_beat")
    page.click("#round-close-submit")
    page.wait_for_url("**/rounds/1/?closed=1")
    rnd = Round.objects.get(project=project, index=1)
    assert rnd.state == Round.State.CLOSED and rnd.dpo_snapshot_id
    page.wait_for_selector("#generation[data-live='0']")
    shot(page, "round-closed")

    # 9. The DPO snapshot: followed while it builds, then its card and files; download them and load
    # them with `datasets`.
    page.click("#round-dpo-link")
    page.wait_for_selector("#snapshot-build[data-state=pending]")
    shot(page, "snapshot-pending")
    for snapshot in Snapshot.objects.filter(project=project, state=Snapshot.State.PENDING):
        export_services.snapshot_build(snapshot_id=snapshot.pk)
    page.wait_for_selector("#snapshot-files")  # the page reloads itself once the build is done
    shot(page, "snapshot")
    dpo = Snapshot.objects.get(pk=rnd.dpo_snapshot_id)
    assert dpo.state == Snapshot.State.DONE and f"Rows: {dpo.rows_total}" in page.inner_text("#dataset-card")
    folder = tmp_path / "dpo"
    links = page.locator("#snapshot-files a.download")
    paths = [links.nth(i).inner_text() for i in range(links.count())]
    assert set(paths) == {f["path"] for f in dpo.manifest["files"]} and "README.md" in paths
    for i, path in enumerate(paths):
        with page.expect_download() as download:
            links.nth(i).click()
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        download.value.save_as(folder / path)
    import datasets

    pairs = datasets.load_dataset("parquet", data_files=str(folder / "data" / "train-*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf"))
    # The rejected judgement is out: only the other annotator's pairs (the winner beat 2 candidates).
    assert pairs.num_rows == dpo.rows_total == 2
    assert set(pairs.unique("judgement_id")) == {judgement_ids[1]}
    page.goto(f"{live_server.url}/console/projects/chairs/snapshots/")
    shot(page, "snapshots")

    # 10. Upload a checkpoint (the trainer's, trained elsewhere), add it to the mix, then set the shares.
    weights = tmp_path / "r1.pt"
    weights.write_bytes(weights_variant("chairs-r1"))
    page.keyboard.press("c")
    page.wait_for_url("**/console/projects/chairs/checkpoints/")
    page.fill("#id_ck_version", "chairs-r1")
    page.select_option("#id_ck_parent", str(bootstrap.pk))
    page.set_input_files("#id_ck_file", str(weights))
    page.check("#checkpoint-upload input[name=add_to_mix]")
    page.click("#checkpoint-upload-submit")
    page.wait_for_url("**/checkpoints/?uploaded=*")
    from modelzoo.models import Checkpoint

    new = Checkpoint.objects.get(version="chairs-r1")
    assert new.parent == bootstrap
    assert dict(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", "share")) == {
        new.pk: 0.5, bootstrap.pk: 0.5}
    assert page.locator(f"#lineage-{new.pk}").count() == 1 and page.locator(".lineage .edge").count() == 1
    page.fill(f'tr[data-checkpoint="{new.pk}"] .mix-share', "3")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("m")
    page.wait_for_url("**/checkpoints/?mix=*")
    assert dict(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", "share")) == {
        new.pk: 3.0, bootstrap.pk: 0.5}
    shot(page, "checkpoints")

    # 11. Train on round 1's snapshots from the console; the run's progress and loss curves follow live.
    from engine.models import TrainingRun
    from engine.rounds import train

    page.select_option("#id_tr_round", "1")
    page.select_option("#id_tr_parent", str(bootstrap.pk))
    page.fill("#id_tr_hp", '{"sft_steps": 3, "dpo_steps": 3, "sft_batch": 4, "dpo_batch": 4, "noise_repeats": 2}')
    page.click("#training-start-submit")
    page.wait_for_selector("#training-runs [data-run][data-state=pending]")
    run = TrainingRun.objects.get(project=project)
    assert (run.round, run.sft_snapshot_id, run.dpo_snapshot_id, run.parent) == (rnd, rnd.sft_snapshot_id,
                                                                                 rnd.dpo_snapshot_id, bootstrap)
    train.training_run_execute(run_id=run.pk, evaluate=False)  # what the model worker does with the task
    page.wait_for_selector(f"#training-runs [data-run='{run.pk}'][data-state=done] .loss-chart svg polyline")
    assert page.locator(f"[data-run='{run.pk}'] .loss-chart polyline").count() == 2  # SFT and DPO
    shot(page, "checkpoints-trained")
    assert not errors, errors


def run_import_jobs(project) -> None:
    """What the default-queue worker does with an import: prepare an uploaded one, run its batches."""
    from engine.ingest import jobs
    from engine.models import IngestBatch, IngestJob

    for job in IngestJob.objects.filter(project=project).order_by("pk"):
        if job.state == IngestJob.State.PREPARING:
            jobs.ingest_job_prepare_run(job_id=job.pk)
        for batch in IngestBatch.objects.filter(job=job, state=IngestBatch.State.WAITING).order_by("pk"):
            jobs.ingest_batch_run(batch_id=batch.pk)


def import_zip(page, live_server, project, tmp_path: Path) -> None:
    """Drop the zip on the import page: it uploads it in chunks and the import runs as a job."""
    from engine.models import IngestJob

    path = tmp_path / "photos.zip"
    path.write_bytes(photos_zip())
    page.goto(f"{live_server.url}/console/projects/{project.slug}/import/")
    page.locator("input[type=file]").first.set_input_files(str(path))
    deadline = time.monotonic() + 60
    while not IngestJob.objects.filter(project=project).exists():  # uploaded in chunks, then completed
        assert time.monotonic() < deadline, "the import page did not start an import job"
        time.sleep(0.2)
    run_import_jobs(project)
    page.wait_for_function(f"() => document.body.innerText.includes('{PHOTOS} added')", timeout=30000)
    shot(page, "import")
