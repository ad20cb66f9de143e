"""Hard-case recovery from the console's round page, in a real browser: a lead sees the round's hard
case waiting for an artist, sends it back for more seeds ranked by the project's ranker, follows
the recovery's generation, and after an annotator's good rating sees it counted recovered.
Screenshots: tests/artifacts/console-recovery-*.png. The worker's generation and the annotator's
judgement run in the test's process (tests/browser/test_console_round.py says why)."""
from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, login
from tests.browser.test_console_round import judge_through_the_api, run_generation, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_sends_a_hard_case_back_for_ranked_seeds_and_sees_it_recovered(live_server, page, frontend_built,
                                                                              tmp_path, settings):
    import torch

    from annotation.models import Item, ItemState
    from engine.rounds import services as round_services
    from modelzoo import services as zoo
    from modelzoo.models import GenerationJobItem
    from modelzoo.ranker import RankerNet
    from tests.engine.factories import MembershipFactory, ProjectFactory, UserFactory
    from tests.modelzoo_engine.conftest import photo_with_masks

    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = False
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    project = ProjectFactory(slug="mugs", name="Mugs", overlap=1, gold_rate=0)
    lead, annotator = UserFactory(username="lena"), UserFactory(username="ann")
    MembershipFactory(project=project, user=lead, role="lead")
    MembershipFactory(project=project, user=annotator, role="annotator")
    photo_with_masks(project, seed=0, n_masks=1)
    bootstrap, _ = zoo.bootstrap_register(make_current=False)
    zoo.project_mix_set(project=project, mix=[(bootstrap, 1.0)])
    torch.manual_seed(0)
    RankerNet(width=8, hidden=16).save(tmp_path / "r.pt")
    ranker = zoo.checkpoint_register(name="ranker", version="r1", backend="ranker", role="ranker",
                                     data=(tmp_path / "r.pt").read_bytes(), project=project)[0]
    rnd = round_services.round_open(project=project, steps=1, candidates_per_item=2)
    run_generation(GenerationJobItem.objects.filter(job__round=rnd).values_list("pk", flat=True))
    judge_through_the_api("mugs", annotator, rating=2)  # below alpha 3: a hard case
    hard = Item.objects.get(round=rnd)
    assert hard.state == ItemState.HARD_CASE

    login(page, live_server, lead.username, "/console/projects/mugs/rounds/1/")
    assert page.inner_text("#recovery-waiting") == "1"
    page.select_option("#id_ranker", str(ranker.pk))
    page.fill("#id_generate", "4")
    page.fill("#id_shown", "2")
    page.fill("#id_random", "1")
    page.wait_for_selector(".job")
    shot(page, "recovery")
    page.click("#recovery-submit")
    page.wait_for_url("**/console/projects/mugs/rounds/1/?recovering=*")
    rescue = Item.objects.get(recovers=hard)
    assert page.inner_text("#recovery-waiting") == "0"  # out of the artists' queue while it is judged again
    run_generation(GenerationJobItem.objects.filter(item=rescue).values_list("pk", flat=True))
    page.wait_for_function("() => document.getElementById('generation').dataset.live === '0'")
    assert "3 / 3" in page.inner_text("#generation-jobs")  # the recovery's job: 2 top + 1 drawn of 4 seeds

    judge_through_the_api("mugs", annotator, rating=4)  # the recovery item: a new item for this annotator
    page.reload()
    page.wait_for_selector(".job")  # the round's generation jobs, loaded
    assert page.inner_text("#recovery-recovered") == "1"
    assert "recovered of those decided 100%" in page.inner_text("#recovery-counts")
    shot(page, "recovery-recovered")
    hard.refresh_from_db()
    assert hard.state == ItemState.DONE and hard.state_reason == f"recovered by item {rescue.pk}"
    assert errors == []
