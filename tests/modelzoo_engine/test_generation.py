"""Generation jobs and the idempotent per-item task, run as functions (never eagerly via Celery)."""
import threading
from collections import Counter

import pytest
from django.db import connection

from annotation.models import Item, ItemState
from engine.rounds import generate
from modelzoo import selectors, services
from modelzoo.models import Candidate, GenerationJob, GenerationJobItem
from engine.rounds.tasks import generate_item
from tests.modelzoo_engine.conftest import N, REAL_ENQUEUE


def test_mix_allocation_follows_shares_and_rotates_remainders():
    assert generate.mix_allocate(shares=[1.0], n=8) == [8]
    assert generate.mix_allocate(shares=[3, 1], n=8) == [6, 2]
    assert sum(generate.mix_allocate(shares=[1, 1, 1], n=8)) == 8
    totals = Counter()
    for item_id in range(300):  # over many items each checkpoint gets its share exactly
        for k, c in enumerate(generate.mix_allocate(shares=[1, 1, 1], n=8, rotation=item_id)):
            totals[k] += c
    assert totals == {0: 800, 1: 800, 2: 800}
    totals = Counter()  # two checkpoints tie for the one seed left, a third does not: the two share it
    for item_id in range(300):
        for k, c in enumerate(generate.mix_allocate(shares=[0.375, 0.25, 0.375], n=4, rotation=item_id)):
            totals[k] += c
    assert totals == {0: 450, 1: 300, 2: 450}


def test_plan_is_deterministic_and_seeds_are_distinct():
    plan = generate.item_plan(item_id=7, mix=[(1, 0.5), (2, 0.5)], n=8)
    assert plan == generate.item_plan(item_id=7, mix=[(1, 0.5), (2, 0.5)], n=8)
    assert Counter(c for c, _ in plan) == {1: 4, 2: 4}
    assert len({s for _, s in plan}) == 8
    assert plan != generate.item_plan(item_id=8, mix=[(1, 0.5), (2, 0.5)], n=8)


def test_a_backend_whose_seed_is_a_rank_is_asked_for_its_best_answers_in_order():
    plan = generate.item_plan(item_id=7, mix=[(1, 0.5), (2, 0.5)], n=8, ranked={2: 0})
    assert [s for c, s in plan if c == 2] == [0, 1, 2, 3]  # a retrieval's 4 nearest shapes
    hashed = [s for c, s in plan if c == 1]
    assert hashed == [s for c, s in generate.item_plan(item_id=7, mix=[(1, 0.5), (2, 0.5)], n=8) if c == 1]
    assert [s for c, s in generate.item_plan(item_id=7, mix=[(1, 0.5), (2, 0.5)], n=8, ranked={2: 5})
            if c == 2] == [5, 6, 7, 8]


def test_job_start_creates_waiting_items_and_enqueues_one_task_each(gen_project, django_capture_on_commit_callbacks,
                                                                    monkeypatch):
    sent = []
    monkeypatch.setattr(generate, "job_items_enqueue", REAL_ENQUEUE)
    monkeypatch.setattr(generate_item, "apply_async", lambda args, queue: sent.append((args[0], queue)))
    with django_capture_on_commit_callbacks(execute=True):
        job = generate.generation_job_start(project=gen_project)
    assert job.total_items == 4 and job.total_candidates == 4 * N
    assert sorted(sent) == sorted((pk, "model") for pk in job.job_items.values_list("pk", flat=True))
    assert set(Item.objects.filter(project=gen_project).values_list("state", flat=True)) == {ItemState.WAITING}
    # a second job takes the waiting items over (the first job's tasks may have been lost)
    with django_capture_on_commit_callbacks(execute=True):
        again = generate.generation_job_start(project=gen_project)
    assert again.total_items == 4
    job.refresh_from_db()
    assert job.state == GenerationJob.State.FINISHED
    assert set(job.job_items.values_list("state", flat=True)) == {GenerationJobItem.State.SUPERSEDED}
    generate.job_item_generate(job_item_id=job.job_items.first().pk)  # a late task of the first job
    assert not Candidate.objects.exists()
    assert generate_item.acks_late and generate_item.name == "modelzoo.generate_item"


def test_task_twice_creates_each_candidate_once_and_readies_the_item(gen_project, fresh_registry):
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    generate_item.run(job_item.pk)
    generate_item.run(job_item.pk)  # a duplicate delivery
    GenerationJobItem.objects.filter(pk=job_item.pk).update(state=GenerationJobItem.State.PENDING)
    generate.job_item_generate(job_item_id=job_item.pk)  # a re-run after a crash before "done"
    candidates = Candidate.objects.filter(item=job_item.item)
    assert candidates.count() == N
    assert sorted((c.checkpoint_id, c.seed) for c in candidates) == sorted(map(tuple, job_item.plan))
    item = Item.objects.get(pk=job_item.item_id)
    assert item.state == ItemState.READY
    c = candidates.first()
    assert c.glb.name.startswith("candidates/") and c.preview.name.endswith(".png")
    assert {"model", "glb_encoding", "storage"} <= set(c.timings)
    assert fresh_registry.loaded.loads == 1  # the checkpoint was loaded once for all runs


def test_rerun_after_partial_crash_creates_only_what_is_missing(gen_project, fresh_registry):
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    generate.job_item_generate(job_item_id=job_item.pk)
    first_ids = set(Candidate.objects.filter(item=job_item.item).values_list("pk", flat=True))
    Candidate.objects.filter(pk__in=sorted(first_ids)[: N // 2]).delete()  # as if the worker died half way
    GenerationJobItem.objects.filter(pk=job_item.pk).update(state=GenerationJobItem.State.PENDING)
    generate.job_item_generate(job_item_id=job_item.pk)
    after = set(Candidate.objects.filter(item=job_item.item).values_list("pk", flat=True))
    assert len(after) == N and sorted(first_ids)[N // 2:] == sorted(after & first_ids)


def test_an_item_costs_a_fixed_number_of_queries(gen_project, fresh_registry, django_assert_max_num_queries):
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    generate.job_item_generate(job_item_id=job.job_items.last().pk)  # the checkpoint is loaded
    # read the job item, count the attempt, read existing candidates and checkpoints; one
    # transaction inserts all N candidates and moves the item to ready.
    with django_assert_max_num_queries(11):  # whatever N is
        generate.job_item_generate(job_item_id=job_item.pk)
    assert Candidate.objects.filter(item=job_item.item).count() == N


def test_a_failing_checkpoint_of_a_mix_keeps_what_the_others_made(gen_project, failing_backend, fresh_registry):
    good = gen_project.current_checkpoints.first().checkpoint
    bad, _ = services.checkpoint_register(name="failing", version="1", backend="failing")
    services.project_mix_set(project=gen_project, mix=[(good, 1.0), (bad, 1.0)])
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    with pytest.raises(Exception, match="refuses every request"):
        generate.job_item_generate(job_item_id=job_item.pk)
    made = Candidate.objects.filter(item=job_item.item)
    assert made.count() == N // 2 and set(made.values_list("checkpoint_id", flat=True)) == {good.pk}
    assert Item.objects.get(pk=job_item.item_id).state == ItemState.WAITING


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_tasks_create_each_candidate_once(gen_project, fresh_registry, no_broker):
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    errors = []

    def run():
        try:
            generate.job_item_generate(job_item_id=job_item.pk)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert Candidate.objects.filter(item=job_item.item).count() == N
    assert Item.objects.get(pk=job_item.item_id).state == ItemState.READY


def test_failure_is_recorded_on_the_item_with_the_reason(gen_project, failing_backend, fresh_registry):
    bad, _ = services.checkpoint_register(name="failing", version="1", backend="failing")
    services.project_mix_set(project=gen_project, mix=[(bad, 1.0)])
    job = generate.generation_job_start(project=gen_project)
    job_item = job.job_items.first()
    with pytest.raises(Exception) as raised:
        generate_item.run(job_item.pk)
    generate_item.on_failure(raised.value, "task-id", (job_item.pk,), {}, None)  # what the worker calls
    item = Item.objects.get(pk=job_item.item_id)
    assert item.state == ItemState.FAILED and "refuses every request" in item.state_reason
    progress = selectors.generation_job_progress(selectors.generation_job_get(gen_project, job.pk))
    assert progress["items_failed"] == 1 and progress["done"] == 0
    # a new job puts the failed item back to waiting and retries it
    services.project_mix_set(project=gen_project, mix=[(job.project.current_checkpoints.first().checkpoint, 1.0)])
    retry = generate.generation_job_start(project=gen_project, mask_ids=[item.mask_id])
    assert retry.total_items == 1 and Item.objects.get(pk=item.pk).state == ItemState.WAITING


def test_generate_command_starts_a_job_and_waits_for_it(gen_project, no_broker, fresh_registry,
                                                        django_capture_on_commit_callbacks):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("generate", "--project", gen_project.slug, "--steps", "1", stdout=out)
    job = GenerationJob.objects.get(project=gen_project)
    assert f"Generation job {job.pk}" in out.getvalue() and sorted(no_broker) == sorted(
        job.job_items.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        for pk in no_broker:  # what the workers would do
            generate.job_item_generate(job_item_id=pk)
    out = io.StringIO()
    call_command("generate", "--project", gen_project.slug, "--wait", stdout=out)  # nothing left to do
    assert "0 items" in out.getvalue()
    assert GenerationJob.objects.get(pk=job.pk).state == GenerationJob.State.FINISHED


def test_a_failure_reason_names_no_server_path(gen_project, checkpoint, fresh_registry, settings):
    """A checkpoint whose weights went missing from storage: the item's reason names the stored file
    as storage names it, not where MEDIA_ROOT puts it on the server."""
    from django.core.files.storage import default_storage

    default_storage.delete(checkpoint.file.name)
    job_item = generate.generation_job_start(project=gen_project).job_items.first()
    with pytest.raises(OSError) as raised:
        generate_item.run(job_item.pk)
    assert str(settings.MEDIA_ROOT) in str(raised.value)  # what the worker's log keeps
    generate_item.on_failure(raised.value, "task-id", (job_item.pk,), {}, None)
    reason = Item.objects.get(pk=job_item.item_id).state_reason
    assert reason.startswith("FileNotFoundError") and checkpoint.file.name in reason
    assert "/tmp" not in reason and str(settings.MEDIA_ROOT) not in reason
    assert GenerationJobItem.objects.get(pk=job_item.pk).error == reason
