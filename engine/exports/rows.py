"""SFT rows and DPO pairs, streamed from the database in batches of items.

Items are read through a server-side cursor (`iterator(chunk_size=...)`); for each batch of
items four or five queries fetch their judgements, comparisons, candidates and artist meshes.
Rows come out in a fixed order (item id, judgement id, pair order), so two builds of one
definition over the same data give the same rows. Nothing here holds more than one batch.

Each batch of items comes out as one Arrow table of `schema.ROW_SCHEMAS` (storage names of the
engine's content-addressed files in the file columns; the writers turn them into bytes or
pointers). DPO pairs are built column-wise: an item's columns (photo, mask, ...) and a
candidate's side (mesh, layout, seed, checkpoint) are encoded once per batch and gathered per
pair with `take`; only the pair's own values (key, judgement, scores) are Python lists.
SFT rows (one or two per item) are dicts made into a table per batch.
"""
from __future__ import annotations

import io
import json
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from django.db.models import Exists, OuterRef, Q, TextField
from django.db.models.functions import Cast

from annotation.models import ArtistMesh, Comparison, Item, Judgement
from engine.exports.schema import LAYOUT, ROW_SCHEMAS
from engine.models import Project
from modelzoo.models import Candidate, Checkpoint

ITEM_BATCH = 1000


@dataclass(frozen=True)
class Watermark:
    """The newest judgement and artist mesh a snapshot includes, and the oldest excluded (since)."""

    judgement_max: int
    artist_max: int
    judgement_after: int = 0
    artist_after: int = 0


def watermark_now(project: Project) -> dict:
    j = Judgement.objects.filter(project=project).order_by("-id").values_list("id", flat=True).first() or 0
    a = ArtistMesh.objects.filter(item__project=project).order_by("-id").values_list("id", flat=True).first() or 0
    return {"judgement_max": j, "artist_max": a}


def layout_struct(layout) -> dict | None:
    """A layout as {rotation: [w,x,y,z], translation: [x,y,z], scale: [x,y,z]} (scalar scale expanded)."""
    if not layout:
        return None
    scale = layout.get("scale", 1.0)
    if isinstance(scale, (int, float)):
        scale = [scale, scale, scale]
    return {"rotation": list(map(float, layout["rotation"])),
            "translation": list(map(float, layout["translation"])), "scale": list(map(float, scale))}


class Selection:
    """The querysets a definition selects, and the per-batch fetches."""

    def __init__(self, *, project: Project, definition: dict, watermark: Watermark):
        self.project = project
        self.definition = definition
        self.f = definition["filters"]
        self.wm = watermark
        self.checkpoints = self.f["checkpoints"] and set(self.f["checkpoints"])
        self._checkpoint_names = {pk: f"{name}:{version}" for pk, name, version
                                  in Checkpoint.objects.values_list("id", "name", "version")}

    def checkpoint_name(self, pk):
        return self._checkpoint_names.get(pk)

    def judgements(self):
        js = Judgement.objects.filter(project=self.project, id__gt=self.wm.judgement_after,
                                      id__lte=self.wm.judgement_max)
        if self.f["exclude_rejected"]:
            js = js.filter(status=Judgement.Status.ACCEPTED)
        else:
            js = js.exclude(status=Judgement.Status.SUPERSEDED)
        if self.f["exclude_annotators"]:
            js = js.exclude(annotator__username__in=self.f["exclude_annotators"])
        return js

    def artist_meshes(self):
        return ArtistMesh.objects.filter(item__project=self.project, item__hard_case=True,
                                         id__gt=self.wm.artist_after, id__lte=self.wm.artist_max)

    def items(self):
        items = Item.objects.filter(project=self.project)
        if self.f["rounds"]:
            items = items.filter(round__index__in=self.f["rounds"])
        if self.f["exclude_gold"]:
            items = items.filter(is_gold=False)
        has_j = Exists(self.judgements().filter(item_id=OuterRef("pk")))
        has_a = Exists(self.artist_meshes().filter(item_id=OuterRef("pk")))
        return items.filter(Q(has_j) | Q(has_a)).order_by("id")

    def item_rows(self) -> Iterator[tuple]:
        return self.items().values_list(
            "id", "round__index", "round__quality_threshold", "hard_case", "is_gold",
            "mask__rle_counts", "mask__bbox", "mask__label", "mask__image_id", "mask__image__file",
            "mask__image__sha256", "mask__image__height", "mask__image__width",
        ).iterator(chunk_size=2000)

    def batch(self, item_ids: list[int], *, comparisons: bool) -> dict:
        """Everything about a batch of items: judgements, comparisons, candidates, artist meshes.

        DPO (`comparisons`) needs no annotator layouts: judgement rows end at the ranking there.
        """
        judgements = defaultdict(list)
        lo, hi = item_ids[0], item_ids[-1]  # item ids come sorted; a range avoids 1000-parameter IN lists
        fields = ["id", "item_id", "annotator__username", "winner_id", "rating", "below_threshold", "protocol",
                  "ranking"] + ([] if comparisons else ["layout", "model_layout"])
        for row in (self.judgements().filter(item_id__gte=lo, item_id__lte=hi).order_by("item_id", "id")
                    .values_list(*fields)):
            judgements[row[1]].append(row)
        agree = None
        if self.f["overlap_agrees"]:
            winners = defaultdict(list)
            for item_id, winner_id in (Judgement.objects.filter(
                    item_id__in=item_ids, status=Judgement.Status.ACCEPTED, id__lte=self.wm.judgement_max)
                    .values_list("item_id", "winner_id")):
                winners[item_id].append(winner_id)
            k = self.project.overlap
            agree = {i for i, w in winners.items() if len(w) >= k and len(set(w)) == 1}
        comps = defaultdict(list)
        if comparisons:
            if judgements:
                j_lo = min(j[0] for rows in judgements.values() for j in rows)
                j_hi = max(j[0] for rows in judgements.values() for j in rows)
                for row in (Comparison.objects.filter(judgement__item_id__gte=lo, judgement__item_id__lte=hi,
                                                      judgement_id__gte=j_lo, judgement_id__lte=j_hi)
                            .order_by("judgement_id", "index")
                            .values_list("judgement_id", "index", "left_id", "right_id", "outcome")):
                    comps[row[0]].append(row)
        candidates = defaultdict(dict)
        # DPO reads layouts as JSON text, parsed a batch at a time (layout_column); SFT as dicts.
        layout = Cast("layout", output_field=TextField()) if comparisons else "layout"
        for row in (Candidate.objects.filter(item_id__gte=lo, item_id__lte=hi).order_by("item_id", "id")
                    .values_list("id", "item_id", "checkpoint_id", "seed", "steps", "glb", layout, "splat",
                                 "textured", "num_gaussians", "selection", "ranker_score", "ranker_rank")):
            candidates[row[1]][row[0]] = row
        artist = {}
        for pk, item_id, name, sha, a_layout in (self.artist_meshes().filter(item_id__gte=lo, item_id__lte=hi)
                                                 .order_by("item_id", "id")
                                                 .values_list("id", "item_id", "file", "sha256", "layout")):
            artist.setdefault(item_id, (pk, name, sha, a_layout))  # the first mesh an artist made
        return {"judgements": judgements, "agree": agree, "comparisons": comps, "candidates": candidates,
                "artist": artist}


def _item_base(item) -> dict:
    (item_id, round_index, _alpha, hard_case, is_gold, rle, bbox, label, image_id, image_file, image_sha,
     height, width) = item
    return {"item_id": item_id, "round": round_index, "is_gold": is_gold, "image_id": image_id,
            "image": image_file, "image_sha256": image_sha,
            "mask": {"size": [height, width], "counts": rle}, "mask_bbox": [float(v) for v in bbox],
            "label": label}


def _positive_allowed(j, alpha: int, min_rating: int | None, hard_case: bool) -> bool:
    """A judgement gives chosen rows only if its winner is rated at least alpha (and min_rating)."""
    rating, below = j[4], j[5]
    return not hard_case and not below and rating >= alpha and (min_rating is None or rating >= min_rating)


def _candidate_side(sel: Selection, cand) -> dict:
    (pk, _item, checkpoint_id, seed, steps, glb, layout, splat, textured, num_gaussians, selection, ranker_score,
     ranker_rank) = cand
    return {"candidate_id": pk, "source": "candidate", "mesh": glb or None, "checkpoint_id": checkpoint_id,
            "checkpoint": sel.checkpoint_name(checkpoint_id), "seed": seed, "steps": steps,
            "layout": layout_struct(layout), "splat": splat or None, "textured": textured,
            "num_gaussians": num_gaussians, "selection": selection, "ranker_score": ranker_score,
            "ranker_rank": ranker_rank}


_LAYOUT_JSON = pa_json.ParseOptions(explicit_schema=pa.schema(list(LAYOUT)), unexpected_field_behavior="ignore")


def layout_column(texts: list[str | None]) -> pa.Array:
    """Layouts given as their JSON text, as one LAYOUT column parsed by Arrow in one call (the
    same doubles as json.loads then layout_struct, a tenth of the time); what Arrow's schema
    cannot hold (a scalar or missing scale) goes the Python way, for the whole column."""
    valid = [bool(t) and t != "null" for t in texts]
    if not texts:
        return pa.array([], LAYOUT)
    data = "\n".join(t if v else "{}" for t, v in zip(texts, valid)).encode()
    invalid = len(texts) - sum(valid)
    try:
        table = pa_json.read_json(io.BytesIO(data), read_options=pa_json.ReadOptions(use_threads=False),
                                  parse_options=_LAYOUT_JSON).combine_chunks()
    except pa.ArrowInvalid:
        table = None
    if table is None or any(table.column(f.name).null_count != invalid for f in LAYOUT):
        return pa.array([layout_struct(json.loads(t)) if v else None for t, v in zip(texts, valid)], LAYOUT)
    return pa.StructArray.from_arrays([table.column(f.name).chunk(0) for f in LAYOUT], fields=list(LAYOUT),
                                      mask=pa.array([not v for v in valid], pa.bool_()))


def _iter_batches(sel: Selection, *, comparisons: bool, progress) -> Iterator[tuple[list, dict]]:
    batch = []
    for item in sel.item_rows():
        batch.append(item)
        if len(batch) >= ITEM_BATCH:
            yield batch, sel.batch([i[0] for i in batch], comparisons=comparisons)
            progress(len(batch))
            batch = []
    if batch:
        yield batch, sel.batch([i[0] for i in batch], comparisons=comparisons)
        progress(len(batch))


# ------------------------------------------------------------------ SFT
def sft_batches(sel: Selection, *, progress=lambda n: None) -> Iterator[pa.Table]:
    """SFT rows, one table per batch of items that has any."""
    schema = ROW_SCHEMAS["sft"]
    for items, data in _iter_batches(sel, comparisons=False, progress=progress):
        rows = [row for item in items for row in _sft_item_rows(sel, item, data)]
        if rows:
            yield pa.Table.from_pylist(rows, schema=schema)


def _sft_item_rows(sel: Selection, item, data: dict) -> Iterator[dict]:
    """One row per (item, chosen candidate), annotators aggregated; one per hard case with an artist mesh."""
    item_id, alpha, hard_case = item[0], item[2], item[3]
    if data["agree"] is not None and item_id not in data["agree"]:
        return
    base = _item_base(item)
    by_winner = defaultdict(list)
    for j in data["judgements"].get(item_id, ()):
        if _positive_allowed(j, alpha, sel.f["min_rating"], hard_case):
            by_winner[j[3]].append(j)
    cands = data["candidates"].get(item_id, {})
    for winner_id in sorted(by_winner):
        js = by_winner[winner_id]
        cand = cands.get(winner_id)
        if cand is None or (sel.checkpoints and cand[2] not in sel.checkpoints):
            continue
        side = _candidate_side(sel, cand)
        adjusted = next((j[8] for j in js if j[8]), None)
        ratings = [j[4] for j in js]
        yield {"key": f"i{item_id:010d}_c{winner_id:010d}", **base, "is_hard_case": False, **side,
               "layout_model": side["layout"], "layout": layout_struct(adjusted) or side["layout"],
               "layout_adjusted": adjusted is not None,
               "rating": float(statistics.median(ratings)), "ratings": ratings,
               "annotators": [j[2] for j in js], "judgement_ids": [j[0] for j in js]}
    artist = data["artist"].get(item_id)
    if artist is not None and hard_case:
        js = data["judgements"].get(item_id, ())
        ratings = [j[4] for j in js]
        yield {"key": f"i{item_id:010d}_a{artist[0]:010d}", **base, "is_hard_case": True,
               "candidate_id": None, "source": "artist", "mesh": artist[1], "checkpoint_id": None,
               "checkpoint": None, "seed": None, "steps": None, "layout_model": None,
               "splat": None, "textured": None, "num_gaussians": 0,
               # An annotator's placement in the layout stage, else the artist's own.
               "layout": layout_struct(next((j[8] for j in js if j[8]), None) or artist[3]),
               "layout_adjusted": any(j[8] for j in js),
               "rating": float(statistics.median(ratings)) if ratings else None, "ratings": ratings,
               "annotators": [j[2] for j in js], "judgement_ids": [j[0] for j in js]}


# ------------------------------------------------------------------ DPO
def _order(j, comps) -> tuple[dict, set]:
    """(dominated, ties) of one judgement: dominated[c] = candidates c is better than
    (transitively through strict wins), ties = direct equal pairs (smaller id first)."""
    beats = defaultdict(set)
    ties = set()
    ranking = j[7]
    if ranking:
        below = [c for g in ranking for c in g]
        pos = 0
        for group in ranking:
            pos += len(group)
            for c in group:
                beats[c] = set(below[pos:])
            for a in group:
                for b in group:
                    if a < b:
                        ties.add((a, b))
        return beats, ties
    direct = defaultdict(set)
    for _j, _idx, left, right, outcome in comps:
        if outcome == "left":
            direct[left].add(right)
        elif outcome == "right":
            direct[right].add(left)
        else:
            ties.add((min(left, right), max(left, right)))
    for c in direct:
        stack, seen = list(direct[c]), set()
        while stack:
            d = stack.pop()
            if d not in seen and d != c:
                seen.add(d)
                stack.extend(direct.get(d, ()))
        beats[c] = seen
    return beats, ties


def _judgement_pairs(pairing: str, keep_ties: bool, j, comps, beats, ties) -> list[tuple[int, int, bool, int | None]]:
    """(chosen, rejected, is_tie, comparison index) in a fixed order."""
    out = []
    if pairing == "recorded" and not j[7]:
        for _j, idx, left, right, outcome in comps:
            if outcome == "left":
                out.append((left, right, False, idx))
            elif outcome == "right":
                out.append((right, left, False, idx))
            elif keep_ties:
                out.append((left, right, True, idx))
        return out
    if pairing == "winner_beat":
        winner = j[3]
        out = [(winner, c, False, None) for c in sorted(beats.get(winner, ()))]
        if keep_ties:
            out += [(a, b, True, None) for a, b in sorted(ties) if winner in (a, b)]
        return out
    # ranking (and recorded for a full ranking, whose record is the ranking itself)
    for a in sorted(beats, key=lambda c: (-len(beats[c]), c)):
        out.extend((a, b, False, None) for b in sorted(beats[a]))
    if keep_ties:
        out += [(a, b, True, None) for a, b in sorted(ties)]
    return out


def _item_columns(items: list) -> dict[str, pa.Array]:
    """The per-item DPO columns of a batch, one value per item (gathered per pair by index)."""
    bases = [_item_base(i) for i in items]
    schema = ROW_SCHEMAS["dpo"]
    columns = {}
    for name in bases[0]:
        column = "group_id" if name == "item_id" else name
        columns[column] = pa.array([b[name] for b in bases], schema.field(column).type)
    return columns


class _Sides:
    """Every candidate of a batch, then every artist mesh, as side columns (candidate_id, source,
    mesh, checkpoint_id, checkpoint, seed, steps, layout); a pair's side is a row index here."""

    def __init__(self, sel: Selection, data: dict):
        cands = [c for per_item in data["candidates"].values() for c in per_item.values()]
        artists = sorted(data["artist"].items())
        self.row = {c[0]: n for n, c in enumerate(cands)}  # candidate id -> row
        self.artist_row = {item_id: len(cands) + n for n, (item_id, _) in enumerate(artists)}
        none = [None] * len(artists)
        self.columns = {
            "candidate_id": pa.array([c[0] for c in cands] + none, pa.int64()),
            "source": pa.array(["candidate"] * len(cands) + ["artist"] * len(artists), pa.string()),
            "mesh": pa.array([c[5] or None for c in cands] + [a[1] for _, a in artists], pa.string()),
            "checkpoint_id": pa.array([c[2] for c in cands] + none, pa.int64()),
            "checkpoint": pa.array([sel.checkpoint_name(c[2]) for c in cands] + none, pa.string()),
            "seed": pa.array([c[3] for c in cands] + none, pa.int64()),
            "steps": pa.array([c[4] for c in cands] + none, pa.int64()),
            "layout": layout_column([c[6] for c in cands] + [json.dumps(a[3]) if a[3] else None for _, a in artists]),
            "splat": pa.array([c[7] or None for c in cands] + none, pa.string()),
            "textured": pa.array([c[8] for c in cands] + none, pa.bool_()),
            "num_gaussians": pa.array([c[9] for c in cands] + [0] * len(artists), pa.int64()),
            "selection": pa.array([c[10] for c in cands] + none, pa.string()),
            "ranker_score": pa.array([c[11] for c in cands] + none, pa.float64()),
            "ranker_rank": pa.array([c[12] for c in cands] + none, pa.int64()),
        }

    def take(self, prefix: str, rows: list[int]) -> dict[str, pa.Array]:
        indices = pa.array(rows, pa.int64())
        return {prefix + name: column.take(indices) for name, column in self.columns.items()}


class _Pairs:
    """The pair-level DPO columns of a batch, as lists; item and sides as row indices."""

    def __init__(self):
        self.item, self.chosen, self.rejected = [], [], []
        self.key, self.judgement_id, self.annotator, self.pairing, self.comparison_index = [], [], [], [], []
        self.score_chosen, self.score_rejected, self.is_tie, self.rating = [], [], [], []

    def add(self, *, item: int, chosen: int, rejected: int, key: str, judgement_id, annotator, pairing: str,
            comparison_index, score_chosen: int, score_rejected: int, is_tie: bool, rating) -> None:
        self.item.append(item)
        self.chosen.append(chosen)
        self.rejected.append(rejected)
        self.key.append(key)
        self.judgement_id.append(judgement_id)
        self.annotator.append(annotator)
        self.pairing.append(pairing)
        self.comparison_index.append(comparison_index)
        self.score_chosen.append(score_chosen)
        self.score_rejected.append(score_rejected)
        self.is_tie.append(is_tie)
        self.rating.append(rating)

    def table(self, items: dict[str, pa.Array], sides: _Sides) -> pa.Table:
        score_chosen = pa.array(self.score_chosen, pa.float64())
        score_rejected = pa.array(self.score_rejected, pa.float64())
        item_rows = pa.array(self.item, pa.int64())
        columns = {
            **{name: column.take(item_rows) for name, column in items.items()},
            **sides.take("chosen_", self.chosen), **sides.take("rejected_", self.rejected),
            "key": pa.array(self.key, pa.string()),
            "judgement_id": pa.array(self.judgement_id, pa.int64()),
            "annotator": pa.array(self.annotator, pa.string()),
            "pairing": pa.array(self.pairing, pa.string()),
            "comparison_index": pa.array(self.comparison_index, pa.int64()),
            "score_chosen": score_chosen, "score_rejected": score_rejected,
            "margin": pc.subtract(score_chosen, score_rejected),
            "is_tie": pa.array(self.is_tie, pa.bool_()),
            "rating": pa.array(self.rating, pa.int64()),
        }
        schema = ROW_SCHEMAS["dpo"]
        return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def dpo_batches(sel: Selection, *, progress=lambda n: None) -> Iterator[pa.Table]:
    """DPO pairs, one table per batch of items that has any."""
    for items, data in _iter_batches(sel, comparisons=True, progress=progress):
        pairs = _Pairs()
        sides = _Sides(sel, data)
        for n, item in enumerate(items):
            _dpo_item_pairs(sel, n, item, data, sides, pairs)
        if pairs.key:
            yield pairs.table(_item_columns(items), sides)


def _dpo_item_pairs(sel: Selection, item_row: int, item, data: dict, sides: _Sides, pairs: _Pairs) -> None:
    pairing, keep_ties = sel.definition["pairing"], sel.definition["keep_ties"]
    item_id, alpha, hard_case = item[0], item[2], item[3]
    if data["agree"] is not None and item_id not in data["agree"]:
        return
    cands = data["candidates"].get(item_id, {})
    for j in data["judgements"].get(item_id, ()):
        if not _positive_allowed(j, alpha, sel.f["min_rating"], hard_case):
            continue  # below alpha: its candidates are only ever negatives
        comps = data["comparisons"].get(j[0], ())
        beats, ties = _order(j, comps)
        n = 0
        for chosen, rejected, is_tie, idx in _judgement_pairs(pairing, keep_ties, j, comps, beats, ties):
            c, r = cands.get(chosen), cands.get(rejected)
            if c is None or r is None:
                continue
            if sel.checkpoints and (c[2] not in sel.checkpoints or r[2] not in sel.checkpoints):
                continue
            pairs.add(item=item_row, chosen=sides.row[chosen], rejected=sides.row[rejected],
                      key=f"i{item_id:010d}_j{j[0]:010d}_p{n:04d}", judgement_id=j[0], annotator=j[2],
                      pairing=pairing, comparison_index=idx, score_chosen=len(beats.get(chosen, ())),
                      score_rejected=len(beats.get(rejected, ())), is_tie=is_tie, rating=j[4])
            n += 1
    artist = data["artist"].get(item_id)
    if artist is not None and hard_case:
        # A hard case's artist mesh beats every candidate: its candidates are negatives only.
        total = len(cands)
        for n, cid in enumerate(sorted(cands)):
            if sel.checkpoints and cands[cid][2] not in sel.checkpoints:
                continue
            pairs.add(item=item_row, chosen=sides.artist_row[item_id], rejected=sides.row[cid],
                      key=f"i{item_id:010d}_a{artist[0]:010d}_p{n:04d}", judgement_id=None, annotator=None,
                      pairing="artist", comparison_index=None, score_chosen=total, score_rejected=0,
                      is_tie=False, rating=None)
