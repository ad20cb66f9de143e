"""Writes of annotation, one module per idea: `leases` (the queue: next item, renew, release,
skip, flag, expiry), `judgements` (validation and storage of submissions), `review` (a lead's
actions), `artists` (meshes for hard cases). Their public services are re-exported here, so
callers write `services.lease_next(...)`.

The hot paths' statements live in `annotation.store`; the item's state moves only through
`annotation.states`.
"""
from annotation.services.artists import ARTIST_MESH_MAX_BYTES, artist_mesh_upload
from annotation.services.judgements import JudgementInput, judgement_submit, judgement_validate
from annotation.services.leases import (
    SKIP_LIMIT,
    daily_cap_check,
    item_flag,
    item_skip,
    lease_active_for,
    lease_next,
    lease_release,
    lease_renew,
    leases_expire_due,
)
from annotation.services.review import item_reopen, item_set_gold, judgement_reject, judgement_restore

__all__ = [
    "ARTIST_MESH_MAX_BYTES", "SKIP_LIMIT", "JudgementInput", "artist_mesh_upload", "daily_cap_check", "item_flag",
    "item_reopen", "item_set_gold", "item_skip", "judgement_reject", "judgement_restore", "judgement_submit", "judgement_validate",
    "lease_active_for", "lease_next", "lease_release", "lease_renew", "leases_expire_due",
]
