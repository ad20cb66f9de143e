import hashlib
import json

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage

from annotation.models import Comparison, Judgement
from engine.errors import ValidationFailed
from engine.exports import services
from engine.exports.models import Snapshot
from tests.exports.conftest import download

pytestmark = pytest.mark.django_db


def build(project, **kwargs):
    snapshot, _ = services.snapshot_define(project=project, **kwargs)
    return services.snapshot_build(snapshot_id=snapshot.pk)


def table(snapshot, tmp_path):
    folder = download(snapshot, tmp_path / f"s{snapshot.pk}")
    return pq.read_table(sorted(str(p) for p in (folder / "data").glob("*.parquet"))).to_pylist()


def pairs(rows):
    return [(r["group_id"], r["chosen_candidate_id"], r["rejected_candidate_id"], r["is_tie"]) for r in rows]


def test_sft_rows(world, tmp_path):
    from modelzoo.models import Candidate

    # a pre-ranked winner carries the ranker's figures into the rows
    Candidate.objects.filter(pk=world.ids["a"][1][2]).update(selection="top", ranker_score=1.5, ranker_rank=2)
    snap = build(world.project, kind="sft", format="parquet")
    rows = table(snap, tmp_path)
    ids = world.ids
    got = {(r["item_id"], r["candidate_id"], r["is_hard_case"]) for r in rows}
    assert got == {(ids["a"][0], ids["a"][1][2], False), (ids["c"][0], ids["c"][1][0], False),
                   (ids["e"][0], ids["e"][1][0], False), (ids["b"][0], None, True)}
    a = next(r for r in rows if r["item_id"] == ids["a"][0])
    assert a["layout"]["translation"] == [0, 0, -3] and a["layout_model"]["translation"] == [0, 0, -2]
    assert a["layout_adjusted"] and a["rating"] == 4 and a["checkpoint"] == "builtin:v1"
    assert a["seed"] is not None and a["mesh"]["path"].endswith(".glb") and a["image"]["path"].endswith(".png")
    assert a["mask"]["size"] == [48, 64]
    assert (a["selection"], a["ranker_score"], a["ranker_rank"]) == ("top", 1.5, 2)
    c = next(r for r in rows if r["item_id"] == ids["c"][0])
    assert (c["selection"], c["ranker_score"], c["ranker_rank"]) == ("all", None, None)
    hard = next(r for r in rows if r["is_hard_case"])
    assert hard["selection"] is None
    assert hard["source"] == "artist" and hard["mesh"]["bytes"][:4] == b"glTF"
    assert hard["layout"]["translation"] == [0.1, 0, -2.5]  # where the artist placed it: an SFT target
    assert snap.rows_total == 4 and snap.manifest["counts"]["hard_case_rows"] == 1


def test_dpo_recorded_pairs_match_stored_comparisons(world, tmp_path):
    snap = build(world.project, kind="dpo", format="parquet")
    rows = table(snap, tmp_path)
    expected = []
    alpha = world.project.quality_threshold
    for c in Comparison.objects.filter(judgement__status=Judgement.Status.ACCEPTED,
                                       judgement__rating__gte=alpha).order_by("judgement__item_id", "judgement_id",
                                                                              "index"):
        if c.outcome != "equal":
            loser = c.right_id if c.outcome == "left" else c.left_id
            expected.append((c.judgement.item_id, c.winner_id, loser, False))
    assert {r["chosen_selection"] for r in rows if r["chosen_source"] == "candidate"} == {"all"}
    recorded = [p for p, r in zip(pairs(rows), rows)
                if r["pairing"] == "recorded" and r["group_id"] != world.ids["e"][0]]
    assert recorded == expected
    # full ranking E: its record is the ranking: 5 strict pairs
    e_item, (e1, e2, e3, e4) = world.ids["e"]
    assert sorted(p[1:3] for p in pairs(rows) if p[0] == e_item) == sorted(
        [(e1, e2), (e1, e3), (e1, e4), (e2, e4), (e3, e4)])
    # B is below alpha: never a chosen candidate, only artist-vs-candidate pairs
    b_item, b_cands = world.ids["b"]
    b_rows = [r for r in rows if r["group_id"] == b_item]
    assert [r["rejected_candidate_id"] for r in b_rows] == b_cands
    assert all(r["chosen_source"] == "artist" and r["chosen_candidate_id"] is None for r in b_rows)
    assert all(r["chosen_layout"]["translation"] == [0.1, 0, -2.5] for r in b_rows)
    assert not any(r["is_tie"] for r in rows)
    assert all(r["margin"] == r["score_chosen"] - r["score_rejected"] for r in rows)
    # D was rejected in review
    assert world.ids["d"][0] not in {r["group_id"] for r in rows}


def test_dpo_strategies_and_ties(world, tmp_path):
    a_item, (a1, a2, a3, a4) = world.ids["a"]
    beat = table(build(world.project, kind="dpo", format="parquet", pairing="winner_beat"), tmp_path)
    assert [p[1:] for p in pairs(beat) if p[0] == a_item] == [(a3, a1, False), (a3, a2, False)]
    ranking = table(build(world.project, kind="dpo", format="parquet", pairing="ranking", keep_ties=True), tmp_path)
    got = [p[1:] for p in pairs(ranking) if p[0] == a_item]
    assert got == [(a3, a1, False), (a3, a2, False), (a1, a2, False), (a3, a4, True)]
    e_item, (e1, e2, e3, e4) = world.ids["e"]
    assert (e2, e3, True) in [p[1:] for p in pairs(ranking) if p[0] == e_item]
    recorded_ties = table(build(world.project, kind="dpo", format="parquet", keep_ties=True), tmp_path)
    tie = [r for r in recorded_ties if r["is_tie"] and r["group_id"] == a_item]
    assert [(r["chosen_candidate_id"], r["rejected_candidate_id"], r["comparison_index"]) for r in tie] == [(a3, a4, 3)]


def test_filters(world, tmp_path):
    ids = world.ids
    rows = table(build(world.project, kind="sft", format="parquet",
                       filters={"exclude_gold": True, "rounds": [1]}), tmp_path)
    assert {r["item_id"] for r in rows} == {ids["a"][0], ids["b"][0]}
    rows = table(build(world.project, kind="sft", format="parquet", filters={"min_rating": 5}), tmp_path)
    assert {r["item_id"] for r in rows} == {ids["c"][0], ids["b"][0]}  # C rated 5; B's artist mesh
    rows = table(build(world.project, kind="dpo", format="parquet", pairing="ranking",
                       filters={"checkpoints": [world.ckpt2.pk], "rounds": [2]}), tmp_path)
    e1, e2, e3, e4 = ids["e"][1]
    assert sorted((r["chosen_candidate_id"], r["rejected_candidate_id"]) for r in rows) == [(e2, e4)]
    rows = table(build(world.project, kind="sft", format="parquet",
                       filters={"exclude_rejected": False, "exclude_annotators": []}), tmp_path)
    assert ids["d"][0] in {r["item_id"] for r in rows}


def test_overlap_agrees(world, tmp_path):
    a_item, (a1, a2, a3, a4) = world.ids["a"]
    c_item, (c1, c2) = world.ids["c"]
    from annotation.models import Item
    world.judge(Item.objects.get(pk=a_item), winner=a1, rating=4, annotator=world.annotators[1])
    world.judge(Item.objects.get(pk=c_item), winner=c1, rating=4, annotator=world.annotators[1])
    world.project.overlap = 2
    world.project.save(update_fields=["overlap"])
    rows = table(build(world.project, kind="sft", format="parquet", filters={"overlap_agrees": True}), tmp_path)
    assert {r["item_id"] for r in rows} == {c_item}
    assert next(r for r in rows)["annotators"] == sorted(u.username for u in world.annotators)


def test_manifest_sha256_and_byte_identical_rebuild(world):
    first = {}
    for fmt in ("parquet", "webdataset", "jsonl"):
        snap = build(world.project, kind="dpo", format=fmt, keep_ties=True, shard_bytes=4096)
        assert len(snap.manifest["files"]) > 2  # README + several shards
        for entry in snap.manifest["files"]:
            with default_storage.open(entry["storage_name"], "rb") as handle:
                data = handle.read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
            assert entry["storage_name"] == f"exports/{entry['sha256'][:2]}/{entry['sha256']}.{entry['path'].rsplit('.', 1)[1]}"
        first[fmt] = snap.manifest
        # Rebuild from nothing: remove the snapshot and its files, define and build again.
        for entry in snap.manifest["files"]:
            default_storage.delete(entry["storage_name"])
        snap.delete()
        again = build(world.project, kind="dpo", format=fmt, keep_ties=True, shard_bytes=4096)
        assert again.manifest == first[fmt]
    readme = first["parquet"]["files"][0]
    assert readme["path"] == "README.md"


def test_define_is_idempotent_and_built_is_immutable(world):
    s1, created1 = services.snapshot_define(project=world.project, kind="sft", format="jsonl")
    s2, created2 = services.snapshot_define(project=world.project, kind="sft", format="jsonl")
    assert created1 and not created2 and s1.pk == s2.pk
    services.snapshot_build(snapshot_id=s1.pk)
    again = services.snapshot_build(snapshot_id=s1.pk)  # a redelivered task: nothing changes
    assert again.state == Snapshot.State.DONE
    from engine.errors import Conflict
    with pytest.raises(Conflict):
        services.snapshot_rebuild_request(snapshot=again)


def test_incremental_since(world, tmp_path):
    first = build(world.project, kind="sft", format="parquet")
    item, (n1, n2) = world.item(2)
    world.judge(item, winner=n2, rating=5, comparisons=[(n1, n2, "right")])
    inc = build(world.project, kind="sft", format="parquet", since=first.pk)
    rows = table(inc, tmp_path)
    assert [(r["item_id"], r["candidate_id"]) for r in rows] == [(item.pk, n2)]
    assert inc.since_id == first.pk
    with pytest.raises(ValidationFailed) as err:  # nothing new since the incremental one
        build(world.project, kind="sft", format="parquet", since=inc.pk)
    assert err.value.code == "empty_selection"


@pytest.mark.parametrize("kwargs, code", [
    ({"kind": "sft", "format": "parquet", "filters": {"quality": 3}}, "unknown_filter"),
    ({"kind": "dpo", "format": "parquet", "pairing": "best_of"}, "invalid_pairing"),
    ({"kind": "sft", "format": "csv"}, "invalid_format"),
    ({"kind": "sft", "format": "parquet", "filters": {"rounds": [7]}}, "invalid_filter"),
    ({"kind": "sft", "format": "parquet", "since": 999999}, "invalid_since"),
])
def test_bad_definitions(world, kwargs, code):
    with pytest.raises(ValidationFailed) as err:
        services.snapshot_define(project=world.project, **kwargs)
    assert err.value.code == code


def test_empty_selection(world):
    with pytest.raises(ValidationFailed) as err:
        services.snapshot_define(project=world.project, kind="sft", format="parquet",
                                 filters={"rounds": [2], "exclude_annotators": [u.username for u in world.annotators]})
    assert err.value.code == "empty_selection" and "selects no items" in err.value.message


def test_jsonl_points_at_stored_files(world, tmp_path):
    snap = build(world.project, kind="dpo", format="jsonl")
    folder = download(snap, tmp_path)
    lines = [json.loads(line) for p in sorted((folder / "data").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(lines) == snap.rows_total
    for row in lines:
        for col in ("image", "chosen_mesh", "rejected_mesh"):
            assert default_storage.exists(row[col])
        assert row["rejected_mesh"].split("/")[-1].split(".")[0] == hashlib.sha256(
            default_storage.open(row["rejected_mesh"]).read()).hexdigest()
