"""Writes of the core domain: projects, members, API tokens. (Ingest: `engine.ingest`.)"""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.text import slugify

from engine.auth import hash_key
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models import ApiToken, Membership, Project, Role, Round

PROJECT_SETTINGS = (
    "name",
    "description",
    "candidates_per_item",
    "quality_threshold",
    "overlap",
    "gold_rate",
    "lease_seconds",
    "ranking_protocol",
    "layout_stage",
    "daily_cap",
    "judged_representation",
    "sampling_steps",
    "item_selection",
)


def _full_clean(instance, exclude=None) -> None:
    try:
        instance.full_clean(exclude=exclude)
    except DjangoValidationError as exc:
        raise ValidationFailed("Invalid project settings; see details.", details=exc.message_dict) from None


@transaction.atomic
def project_create(*, name: str, created_by, slug: str = "", **project_settings) -> Project:
    """Create a project; its creator becomes its lead."""
    unknown = set(project_settings) - set(PROJECT_SETTINGS)
    if unknown:
        raise ValidationFailed(f"Unknown project settings: {', '.join(sorted(unknown))}.")
    slug = slug or slugify(name)[:80]
    if not slug:
        raise ValidationFailed("A project needs a name with letters or digits, or an explicit slug.")
    project = Project(name=name, slug=slug, created_by=created_by, **project_settings)
    _full_clean(project, exclude=["slug", "created_by"])
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:
        raise Conflict(f"A project with slug '{slug}' already exists; choose another slug.") from None
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Role.LEAD)
    return project


# Sent after a project's settings changed, with `changed` (the fields whose value differs): the
# layers above the core react (engine.rounds.selection re-keys the queue when item_selection changes).
project_settings_changed = Signal()


def project_update(*, project: Project, **changes) -> Project:
    unknown = set(changes) - set(PROJECT_SETTINGS)
    if unknown:
        raise ValidationFailed(f"Unknown project settings: {', '.join(sorted(unknown))}.")
    changed = {field for field, value in changes.items() if getattr(project, field) != value}
    for field, value in changes.items():
        setattr(project, field, value)
    _full_clean(project, exclude=["created_by"])
    if changes:
        with transaction.atomic():
            project.save(update_fields=list(changes))
            if changed:
                project_settings_changed.send(sender=Project, project=project, changed=changed)
    return project


def membership_add(*, project: Project, username: str, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role '{role}'; use one of {', '.join(Role.values)}.")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user '{username}'.")
    membership, _ = Membership.objects.get_or_create(project=project, user=user, role=role)
    return membership


@transaction.atomic
def membership_remove(*, project: Project, username: str, role: str) -> None:
    """Take one role from a member. A project keeps at least one lead: removing the last lead role
    (also the first half of changing the last lead's role, which is add the new role, remove lead)
    is refused with 409 `last_lead`."""
    if role == Role.LEAD:  # serialised on the project row: two leads removing each other must not both succeed
        Project.objects.select_for_update().filter(pk=project.pk).first()
    membership = Membership.objects.filter(project=project, user__username=username, role=role).first()
    if membership is None:
        raise NotFound(f"'{username}' has no {role} role in '{project.slug}'.")
    if role == Role.LEAD and not project.memberships.filter(role=Role.LEAD).exclude(pk=membership.pk).exists():
        raise Conflict(f"'{username}' is the last lead of '{project.slug}'; a project needs a lead. Give another "
                       "member the lead role first, then remove this one.", code="last_lead")
    membership.delete()


def token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """A new API token for `user`; returns it and its key, which is never shown again."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the token a name saying what it is for.")
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:8], key_sha256=hash_key(key))
    return token, key


def token_revoke(*, user, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound(f"You have no token {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def round_current(*, project: Project):
    """The project's open round, opening round 1 when the project has none yet."""
    current = project.rounds.filter(state=Round.State.OPEN).order_by("-index").first()
    return current or round_open(project=project)


@transaction.atomic
def round_open(*, project: Project, quality_threshold: int | None = None):
    """Open the project's next round; refuses while another round is still open."""
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise round opening
    if project.rounds.filter(state=Round.State.OPEN).exists():
        raise Conflict(f"Project '{project.slug}' already has an open round; close it first.")
    last = project.rounds.order_by("-index").first()
    return Round.objects.create(
        project=project,
        index=(last.index + 1) if last else 1,
        quality_threshold=quality_threshold or project.quality_threshold,
    )
