"""Selectors read for a user: the scene of one photo."""
import pytest

from annotation.selectors import scene_objects_for_user
from engine.errors import NotFound
from tests.annotation.factories import ImageFactory, ObjectMaskFactory, ready_item
from tests.engine.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_scene_objects_latest_accepted_winner_per_item_for_members_only(project, member, next_item, submit, api):
    project.gold_rate = 0
    project.save()
    photo = ImageFactory(project=project)
    cup = ready_item(project, mask=ObjectMaskFactory(image=photo, label="cup"))
    ready_item(project, mask=ObjectMaskFactory(image=photo, label="bowl"))  # not judged: not in the scene
    ready_item(project)  # another photo
    a = member("annotator")
    payload = next_item(a, project).json()
    assert payload["item"]["id"] == cup.pk
    first = submit(a, payload, rating=4).json()
    body = {"supersedes": first["id"], "key": "fix-1", "comparisons": first["comparisons"], "ranking": None,
            "winner": first["winner"], "rating": 2, "layout": None, "time_spent_ms": 100}
    assert api(a).post(f"/api/v1/items/{cup.pk}/judgements", body, format="json").status_code == 201

    for viewer in (a, member("lead"), member("trainer")):
        project_, image, objects = scene_objects_for_user(viewer, slug=project.slug, image_id=photo.pk)
        assert project_.pk == project.pk and image.pk == photo.pk
        assert [(o["item"], o["label"], o["rating"]) for o in objects] == [(cup.pk, "cup", 2)]
        assert objects[0]["candidate"]["id"] == first["winner"]
        assert objects[0]["layout"] == {"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}
    with pytest.raises(NotFound):
        scene_objects_for_user(UserFactory(), slug=project.slug, image_id=photo.pk)  # not a member
    with pytest.raises(NotFound):
        scene_objects_for_user(a, slug=project.slug, image_id=photo.pk + 1000)
