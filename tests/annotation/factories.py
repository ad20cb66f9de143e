import factory

from annotation.models import Item, ItemState
from engine.models import Image, ObjectMask, Round
from modelzoo.models import Candidate, Checkpoint
from tests.engine.factories import ProjectFactory


class RoundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Round
        django_get_or_create = ["project", "index"]

    project = factory.SubFactory(ProjectFactory)
    index = 1
    quality_threshold = factory.LazyAttribute(lambda o: o.project.quality_threshold)


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    project = factory.SubFactory(ProjectFactory)
    file = factory.Sequence(lambda n: f"images/{n:064x}.png")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    width = 64
    height = 48
    format = "png"
    source_name = factory.Sequence(lambda n: f"photo{n}.png")


class ObjectMaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ObjectMask

    image = factory.SubFactory(ImageFactory)
    rle_counts = "PPYo0"
    rle_sha256 = factory.Sequence(lambda n: f"{n:064x}")
    bbox = [10, 10, 20, 15]
    area = 300
    label = "cup"


class CheckpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Checkpoint
        django_get_or_create = ["name", "version"]

    name = "builtin"
    version = "v1"
    backend = "builtin"


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    project = factory.SubFactory(ProjectFactory)
    round = factory.LazyAttribute(lambda o: RoundFactory(project=o.project))
    mask = factory.LazyAttribute(lambda o: ObjectMaskFactory(image=ImageFactory(project=o.project)))
    state = ItemState.READY


class CandidateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Candidate

    item = factory.SubFactory(ItemFactory)
    checkpoint = factory.LazyFunction(lambda: CheckpointFactory())
    seed = factory.Sequence(lambda n: n)
    steps = 4
    glb = factory.Sequence(lambda n: f"candidates/{n:064x}.glb")
    layout = {"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}
    num_vertices = 100
    num_faces = 200


def ready_item(project, n: int = 4, *, gold: bool = False, **kwargs) -> Item:
    """A ready item of `project` with n candidates (gold: the first candidate is the answer)."""
    item = ItemFactory(project=project, **kwargs)
    candidates = [CandidateFactory(item=item) for _ in range(n)]
    if gold:
        item.is_gold = True
        item.gold_candidate = candidates[0]
        item.save(update_fields=["is_gold", "gold_candidate"])
    return item
