"""Demo data: scikit-image's sample photographs (shipped inside the package) with object
masks this project defines as polygons in `objects.json`, and one demo user per role."""
from __future__ import annotations

import io
import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from PIL import Image as PILImage

from engine.ingest.services import IngestSummary, ingest_items
from engine.ingest.validation import ItemInput, MaskInput
from engine.models import Membership, Project, Role
from engine.services import project_create

OBJECTS_FILE = Path(__file__).with_name("objects.json")
DEMO_SLUG = "demo"
# username -> (password, roles in the demo project, site admin?)
DEMO_USERS = {
    "admin": ("admin-demo-pass", [], True),
    "lead": ("lead-demo-pass", [Role.LEAD, Role.ARTIST], False),
    "annotator1": ("annotator1-demo-pass", [Role.ANNOTATOR], False),
    "annotator2": ("annotator2-demo-pass", [Role.ANNOTATOR], False),
    "trainer": ("trainer-demo-pass", [Role.TRAINER], False),
}


def demo_photo_png(name: str) -> bytes:
    import skimage.data  # the sample photos: only the demo command needs them

    buf = io.BytesIO()
    PILImage.fromarray(getattr(skimage.data, name)()).save(buf, format="PNG")
    return buf.getvalue()


def demo_items() -> list[ItemInput]:
    spec = json.loads(OBJECTS_FILE.read_text())
    return [
        ItemInput(
            name=f"{photo['name']}.png",
            image_bytes=demo_photo_png(photo["name"]),
            masks=[
                MaskInput(source_name=obj["label"], label=obj["label"], segmentation=obj["polygons"],
                          provenance={"format": "demo", "drawn_by": "project"})
                for obj in photo["objects"]
            ],
            source={"format": "demo", "origin": f"skimage.data.{photo['name']}"},
        )
        for photo in spec["photos"]
    ]


@transaction.atomic
def demo_users() -> dict[str, str]:
    """Create (or reset) the demo users; returns username -> password."""
    User = get_user_model()
    logins = {}
    for username, (password, _roles, is_admin) in DEMO_USERS.items():
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = is_admin
        user.is_superuser = is_admin
        user.save()
        logins[username] = password
    return logins


def demo_load() -> tuple[Project, IngestSummary, dict[str, str]]:
    """The demo project with its photos, masks and members; safe to run again."""
    logins = demo_users()
    User = get_user_model()
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    if project is None:
        project = project_create(name="Demo: objects on sample photos", slug=DEMO_SLUG,
                                 created_by=User.objects.get(username="lead"), overlap=2)
    for username, (_password, roles, _admin) in DEMO_USERS.items():
        for role in roles:
            Membership.objects.get_or_create(project=project, user=User.objects.get(username=username), role=role)
    summary = ingest_items(project=project, items=demo_items())
    return project, summary, logins
