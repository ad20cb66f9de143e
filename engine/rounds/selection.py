"""Active selection (Project.item_selection): under 'uncertain', the queue offers first, among items
equally close to completing their overlap, those whose two best shown candidates the pre-ranking
ranker scored closest: where a person's choice teaches the most. The order lives in
`Item.selection_key` (the score margin; NULL sorts last, so items that were not pre-ranked come
after, oldest first), which the lease statement reads through its index; under 'oldest' every key
is NULL and the queue is oldest first, as before.
"""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from annotation.models import Item
from engine.models import ItemSelection, Project
from engine.services import project_settings_changed
from modelzoo.models import GenerationJobItem

BATCH = 2000


def selection_key(ranking: list[dict]) -> float | None:
    """The ranker's margin between the two best-scored candidates annotators are shown, from a job
    item's `ranking` ([{score, shown, ...}], best first); None with fewer than two scored ones."""
    shown = sorted((r["score"] for r in ranking if r.get("shown") and r.get("score") is not None), reverse=True)
    return round(shown[0] - shown[1], 6) if len(shown) >= 2 else None


def item_selection_key_set(*, item_id: int, project: Project, ranking: list[dict]) -> None:
    """Record a pre-ranked item's key when its project selects the uncertain first."""
    if project.item_selection == ItemSelection.UNCERTAIN:
        Item.objects.filter(pk=item_id).update(selection_key=selection_key(ranking))


def item_selection_keys_refresh(*, project: Project) -> int:
    """After the project's item_selection changed: every item's key from its latest pre-ranking
    ('uncertain'), or none ('oldest'). Returns the items whose key was written."""
    with transaction.atomic():
        if project.item_selection != ItemSelection.UNCERTAIN:
            return Item.objects.filter(project=project, selection_key__isnull=False).update(selection_key=None)
        latest: dict[int, list] = {}
        rows = (GenerationJobItem.objects.filter(item__project=project, state=GenerationJobItem.State.DONE)
                .exclude(ranking=[]).order_by("id").values_list("item_id", "ranking"))
        for item_id, ranking in rows.iterator(chunk_size=BATCH):
            latest[item_id] = ranking  # the later job item wins
        items = [Item(pk=pk, selection_key=selection_key(ranking)) for pk, ranking in latest.items()]
        Item.objects.bulk_update(items, ["selection_key"], batch_size=BATCH)
        return len(items)


@receiver(project_settings_changed)
def _item_selection_changed(sender, *, project: Project, changed: set, **kwargs) -> None:
    if "item_selection" in changed:
        item_selection_keys_refresh(project=project)
