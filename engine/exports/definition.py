"""A snapshot definition: what goes in (filters), how DPO pairs are made, in which format.

Plain Python: `definition_normalise` checks a trainer's request and returns the canonical
dict whose SHA-256 names the snapshot (with the data watermark added by the service).
"""
from __future__ import annotations

import hashlib
import json

from engine.bounds import BIGINT_MAX, BIGINT_MIN
from engine.errors import ValidationFailed

KINDS = ("sft", "dpo")
FORMATS = ("parquet", "webdataset", "jsonl")
PAIRINGS = {
    "recorded": "every recorded comparison with a winner is a pair, as it happened",
    "winner_beat": "the judgement's winner against every candidate it beat (directly or through the kings it beat)",
    "ranking": "every pair implied by the judgement's order (a full ranking's groups, or king-of-the-hill dominance)",
}
DEFAULT_SHARD_BYTES = 1_000_000_000
# How photos and meshes are stored: in every row, or once each in an assets table the rows refer
# to by sha256. DPO repeats them (a winner is in up to N-1 pairs, the photo in every pair of its
# item), so its default is referenced; an SFT row holds each mesh once, so it stays embedded.
# JSONL rows always point at the engine's stored files.
ASSETS = {
    "embedded": "every row holds its photo and meshes (one self-contained file; assets repeat across rows)",
    "referenced": "every photo and mesh stored once under assets/, keyed by sha256; rows hold the sha256",
}
ASSET_FORMATS = ("parquet", "webdataset")

# filter name -> (default, human description); nothing else is accepted.
FILTERS = {
    "rounds": (None, "list of round indexes; default all rounds"),
    "checkpoints": (None, "list of checkpoint ids: candidates (chosen and rejected) from these only"),
    "min_rating": (None, "1-5: judgements rating their winner below this give no chosen rows "
                         "(each round's alpha always applies)"),
    "overlap_agrees": (False, "only items whose accepted judgements (at least k) all chose the same winner"),
    "exclude_gold": (False, "leave out gold items"),
    "exclude_rejected": (True, "leave out judgements rejected in review (superseded ones are always out)"),
    "exclude_annotators": ([], "usernames whose judgements are left out"),
}
OPTIONS = {
    "pairing": "recorded",
    "keep_ties": False,
    "shard_bytes": DEFAULT_SHARD_BYTES,
    "license": "other",
}


def _int_list(name: str, value) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(type(v) is int and BIGINT_MIN <= v <= BIGINT_MAX
                                                             for v in value):
        raise ValidationFailed(f"'{name}' must be a non-empty list of integers (64-bit), or null for all.",
                               code="invalid_filter")
    return sorted(set(value))


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"'{name}' must be true or false.", code="invalid_filter")
    return value


def definition_normalise(*, kind: str, format: str, filters: dict | None = None, pairing: str | None = None,
                         keep_ties: bool | None = None, shard_bytes: int | None = None,
                         license: str | None = None, assets: str | None = None) -> dict:
    """The canonical definition, or ValidationFailed saying what is wrong and what is accepted."""
    if kind not in KINDS:
        raise ValidationFailed(f"Unknown kind '{kind}'; use one of {', '.join(KINDS)}.", code="invalid_kind")
    if format not in FORMATS:
        raise ValidationFailed(f"Unknown format '{format}'; use one of {', '.join(FORMATS)}.",
                               code="invalid_format")
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValidationFailed(
            f"Unknown filter(s) {', '.join(unknown)}; known filters: {', '.join(FILTERS)}.",
            code="unknown_filter", details={name: desc for name, (_, desc) in FILTERS.items()},
        )
    out = {name: default for name, (default, _) in FILTERS.items()}
    out["rounds"] = _int_list("rounds", filters.get("rounds"))
    out["checkpoints"] = _int_list("checkpoints", filters.get("checkpoints"))
    min_rating = filters.get("min_rating")
    if min_rating is not None and (not isinstance(min_rating, int) or isinstance(min_rating, bool)
                                   or not 1 <= min_rating <= 5):
        raise ValidationFailed("'min_rating' must be an integer from 1 to 5, or null.", code="invalid_filter")
    out["min_rating"] = min_rating
    for name in ("overlap_agrees", "exclude_gold", "exclude_rejected"):
        out[name] = _bool(name, filters.get(name, FILTERS[name][0]))
    names = filters.get("exclude_annotators", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValidationFailed("'exclude_annotators' must be a list of usernames.", code="invalid_filter")
    out["exclude_annotators"] = sorted(set(names))

    definition = {"kind": kind, "format": format, "filters": out}
    if kind == "dpo":
        pairing = pairing or OPTIONS["pairing"]
        if pairing not in PAIRINGS:
            raise ValidationFailed(f"Unknown pairing '{pairing}'; use one of {', '.join(PAIRINGS)}.",
                                   code="invalid_pairing", details=PAIRINGS)
        definition["pairing"] = pairing
        definition["keep_ties"] = _bool("keep_ties", OPTIONS["keep_ties"] if keep_ties is None else keep_ties)
    elif pairing is not None or keep_ties:
        raise ValidationFailed("'pairing' and 'keep_ties' are for DPO snapshots only.", code="invalid_pairing")
    shard_bytes = OPTIONS["shard_bytes"] if shard_bytes is None else shard_bytes
    if type(shard_bytes) is not int or not 1024 <= shard_bytes <= BIGINT_MAX:
        raise ValidationFailed(f"'shard_bytes' must be an integer from 1024 to {BIGINT_MAX}.", code="invalid_option")
    definition["shard_bytes"] = shard_bytes
    license = license or OPTIONS["license"]
    if not isinstance(license, str) or len(license) > 100:
        raise ValidationFailed("'license' must be a short licence identifier, e.g. cc-by-4.0.",
                               code="invalid_option")
    definition["license"] = license
    if format not in ASSET_FORMATS:
        if assets is not None:
            raise ValidationFailed(f"'assets' is for {' and '.join(ASSET_FORMATS)} snapshots; JSONL rows always "
                                   "point at the stored files.", code="invalid_option")
    else:
        assets = assets or ("referenced" if kind == "dpo" else "embedded")
        if assets not in ASSETS:
            raise ValidationFailed(f"Unknown assets layout '{assets}'; use one of {', '.join(ASSETS)}.",
                                   code="invalid_option", details=ASSETS)
        if assets == "referenced":  # absent when embedded: definitions from before keep their hash
            definition["assets"] = assets
    return definition


def definition_assets(definition: dict) -> str:
    """'embedded' or 'referenced' (definitions without the key predate the option: embedded)."""
    return definition.get("assets", "embedded")


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def definition_hash(*, project_slug: str, definition: dict) -> str:
    return hashlib.sha256(canonical_json({"project": project_slug, **definition})).hexdigest()
