"""The HTTP-only annotation script of docs/annotation.md, run as is against a live server."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from annotation.models import Item, Judgement
from engine.models import Membership
from engine.services import token_create
from tests.annotation.factories import ready_item
from tests.engine.factories import ProjectFactory, UserFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "annotation.md"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_documented_script_annotates_a_project(live_server):
    script = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    project = ProjectFactory(overlap=1, gold_rate=0, layout_stage=True)
    for _ in range(3):
        ready_item(project, n=4)
    user = UserFactory()
    Membership.objects.create(project=project, user=user, role="annotator")
    _, key = token_create(user=user, name="script")
    out = subprocess.run([sys.executable, "-c", script, live_server.url, key, project.slug],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "judged 3 items" in out.stdout
    assert Judgement.objects.count() == 3
    assert set(Item.objects.values_list("state", flat=True)) == {"done"}
