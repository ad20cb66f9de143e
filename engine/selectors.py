"""Reads, and the few places that decide who may see what.

Every view fetches its project through `project_get_for_user`, so that membership
and role are checked here and nowhere else. A project the user is not a member of
is reported as not found, so its existence does not leak.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count, QuerySet

from engine.errors import Forbidden, NotFound
from engine.models import Image, Membership, ObjectMask, Project, Role


def user_is_site_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_superuser)


def project_create_check(user) -> None:
    """Whether `user` may create a project (and so lead it): settings.PROJECT_CREATORS says staff
    (and site admins) only, or everyone logged in. Management commands create projects as the
    system and do not ask."""
    if not user.is_authenticated:
        raise Forbidden("Log in to create a project.", code="not_authenticated")
    if settings.PROJECT_CREATORS == "everyone" or user.is_staff or user_is_site_admin(user):
        return
    raise Forbidden("Only staff users create projects on this server (PROJECT_CREATORS=staff); ask a site "
                    "admin to create the project and add you as its lead.", code="project_creation_restricted")


def projects_for_user(user) -> QuerySet[Project]:
    projects = Project.objects.all()
    if not user_is_site_admin(user):
        projects = projects.filter(memberships__user=user).distinct()
    return projects


def user_roles(user, project: Project) -> set[str]:
    if user_is_site_admin(user):
        return {r.value for r in Role}
    return set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))


def project_get_for_user(user, slug: str, *, roles: Iterable[str] | None = None) -> Project:
    """The project `slug` if `user` is a member (with one of `roles`, when given).

    One query on the hot path: the user's memberships in the project, with the project joined.
    """
    if not user.is_authenticated:
        raise NotFound(f"No project '{slug}' that you are a member of.")
    if user_is_site_admin(user):
        project = Project.objects.filter(slug=slug).first()
        held = {r.value for r in Role}
    else:
        memberships = list(Membership.objects.filter(project__slug=slug, user=user).select_related("project"))
        project = memberships[0].project if memberships else None
        held = {m.role for m in memberships}
    return project_access_decide(user, project, held, slug, roles)


def project_access_decide(user, project: Project | None, held: set[str], slug: str,
                          roles: Iterable[str] | None) -> Project:
    """The access decision for `user` on `project` (None: no such project) given the roles they
    hold in it: non-members get 404, members without one of `roles` 403, site admins every role.
    `project_get_for_user` and the queue's written-out reads (`annotation.selectors`) share it."""
    if user_is_site_admin(user):
        held = {r.value for r in Role}
    if project is None or not held:
        raise NotFound(f"No project '{slug}' that you are a member of.")
    if roles is not None and not held & set(roles):
        wanted = " or ".join(sorted(roles))
        raise Forbidden(f"This needs the {wanted} role in project '{slug}'.", code="role_required")
    project.user_roles = held
    return project


def image_list(project: Project) -> QuerySet[Image]:
    return project.images.annotate(mask_count=Count("masks")).order_by("id")


def image_get(project: Project, image_id: int) -> Image:
    image = project.images.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"No image {image_id} in project '{project.slug}'.")
    return image


def mask_list(project: Project) -> QuerySet[ObjectMask]:
    return ObjectMask.objects.filter(image__project=project).select_related("image").order_by("id")


def mask_get(project: Project, mask_id: int) -> ObjectMask:
    mask = mask_list(project).filter(pk=mask_id).first()
    if mask is None:
        raise NotFound(f"No object mask {mask_id} in project '{project.slug}'.")
    return mask


def members_list(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username", "role")


def roles_by_project(user, projects: Iterable[Project]) -> dict[int, set[str]]:
    """The roles `user` holds in each of `projects` (site admins: every role), in one query."""
    ids = [p.pk for p in projects]
    if user_is_site_admin(user):
        return {pk: {r.value for r in Role} for pk in ids}
    roles: dict[int, set[str]] = {}
    for project_id, role in Membership.objects.filter(user=user, project_id__in=ids).values_list("project_id", "role"):
        roles.setdefault(project_id, set()).add(role)
    return roles


def members_by_user(project: Project) -> list[dict]:
    """The project's members, one entry per user: {"username", "roles": set, "since"} by username.
    The caller has checked that the reader is a lead (`project_get_for_user(..., roles=[LEAD])`)."""
    members: dict[str, dict] = {}
    for m in members_list(project):
        entry = members.setdefault(m.user.username, {"username": m.user.username, "roles": set(), "since": m.created_at})
        entry["roles"].add(m.role)
        entry["since"] = min(entry["since"], m.created_at)
    return list(members.values())
