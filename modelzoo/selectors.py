"""Reads of the model zoo, each checking who asks (membership and role) here and nowhere else."""
from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from engine.errors import Forbidden, NotFound, ValidationFailed
from engine.models import Membership, Project, Role, TrainingRun
from engine.selectors import project_get_for_user, user_is_site_admin
from modelzoo.models import Candidate, Checkpoint, CheckpointShare, GenerationJob, GenerationJobItem, ProjectCheckpoint

REGISTRY_ROLES = (Role.TRAINER, Role.LEAD)


def user_may_use_registry(user) -> bool:
    """Trainers and leads of any project (and site admins) see and upload checkpoints."""
    if user_is_site_admin(user):
        return True
    return user.is_authenticated and Membership.objects.filter(user=user, role__in=REGISTRY_ROLES).exists()


def _visible_to(projects) -> Q:
    """Checkpoints that `projects` (ids, or a query of them) may see and use: public ones (the
    bootstrap), those in their mix, those their training runs produced or started from, and those
    shared with them. One EXISTS per route, each on an indexed foreign key."""
    return (Q(public=True)
            | Q(Exists(CheckpointShare.objects.filter(checkpoint=OuterRef("pk"), project__in=projects)))
            | Q(Exists(ProjectCheckpoint.objects.filter(checkpoint=OuterRef("pk"), project__in=projects)))
            | Q(Exists(TrainingRun.objects.filter(checkpoint=OuterRef("pk"), project__in=projects)))
            | Q(Exists(TrainingRun.objects.filter(parent=OuterRef("pk"), project__in=projects))))


def checkpoint_list_for_user(user) -> QuerySet[Checkpoint]:
    """The checkpoints `user` sees: all for site admins; for trainers and leads, those visible to a
    project where they hold one of these roles (others get 403: the registry is not for annotators)."""
    if not user_may_use_registry(user):
        raise Forbidden("The checkpoint registry is for trainers and leads.", code="role_required")
    checkpoints = Checkpoint.objects.select_related("parent").order_by("-created_at", "-id")
    if user_is_site_admin(user):
        return checkpoints
    projects = Membership.objects.filter(user=user, role__in=REGISTRY_ROLES).values("project_id")
    return checkpoints.filter(_visible_to(projects))


def checkpoint_get_for_user(user, checkpoint_id: int) -> Checkpoint:
    """A checkpoint `user` sees; one they do not is not found, as for projects."""
    checkpoint = checkpoint_list_for_user(user).filter(pk=checkpoint_id).first()
    if checkpoint is None:
        raise NotFound(f"No checkpoint {checkpoint_id}.")
    return checkpoint


def checkpoint_shares_for_user(user, checkpoint: Checkpoint) -> QuerySet[CheckpointShare]:
    """The shares of a checkpoint `user` sees, with the projects `user` is a member of (site admins: all):
    other projects' names do not leak through a checkpoint they share."""
    shares = CheckpointShare.objects.filter(checkpoint=checkpoint).select_related("project").order_by("project__slug")
    if not user_is_site_admin(user):
        shares = shares.filter(Exists(Membership.objects.filter(project=OuterRef("project"), user=user)))
    return shares


def checkpoints_for_project(project: Project) -> QuerySet[Checkpoint]:
    """The checkpoints `project` may put in its mix or train from."""
    return Checkpoint.objects.filter(_visible_to([project.pk]))


def checkpoint_registration_project(user, slug: str | None) -> Project | None:
    """The project a checkpoint is registered for, where `user` trains or leads: the new checkpoint
    becomes visible to it. Site admins may register without one (then only they see it until shared)."""
    if slug:
        return project_get_for_user(user, slug, roles=REGISTRY_ROLES)
    if user_is_site_admin(user):
        return None
    raise ValidationFailed("Name the project the checkpoint is for ('project': its slug, where you are a trainer or "
                           "lead); the checkpoint is visible to that project and to those it is shared with.",
                           code="project_required")


def project_mix(project: Project) -> QuerySet[ProjectCheckpoint]:
    return ProjectCheckpoint.objects.filter(project=project).select_related("checkpoint").order_by("checkpoint_id")


def candidate_get_for_user(user, candidate_id: int) -> Candidate:
    """A candidate, for members of its project (any role); others get not found."""
    candidate = Candidate.objects.select_related("item__project").filter(pk=candidate_id).first()
    if candidate is None:
        raise NotFound(f"No candidate {candidate_id}.")
    try:
        project_get_for_user(user, candidate.item.project.slug)
    except (NotFound, Forbidden):
        raise NotFound(f"No candidate {candidate_id}.") from None
    return candidate


def generation_jobs(project: Project) -> QuerySet[GenerationJob]:
    return project.generation_jobs.annotate(
        done_candidates=Sum("job_items__done", default=0),
        items_done=Count("job_items", filter=Q(job_items__state=GenerationJobItem.State.DONE)),
        items_failed=Count("job_items", filter=Q(job_items__state=GenerationJobItem.State.FAILED)),
    ).order_by("-started_at", "-id")


def generation_job_get(project: Project, job_id: int) -> GenerationJob:
    job = generation_jobs(project).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No generation job {job_id} in project '{project.slug}'.")
    return job


def generation_job_progress(job: GenerationJob) -> dict:
    """done/total, failures and rate of a job annotated by `generation_jobs`."""
    end = job.finished_at or timezone.now()
    elapsed = max((end - job.started_at).total_seconds(), 1e-6)
    done = int(job.done_candidates or 0)
    return {
        "done": done,
        "total": job.total_candidates,
        "fraction": round(done / job.total_candidates, 4) if job.total_candidates else 1.0,
        "items_done": job.items_done,
        "items_failed": job.items_failed,
        "items_total": job.total_items,
        "candidates_per_s": round(done / elapsed, 3),
        "elapsed_s": round(elapsed, 3),
        # Time left at the rate so far: none before the first candidate, nor once finished.
        "eta_s": (round((job.total_candidates - done) / (done / elapsed), 1)
                  if done and not job.finished_at and job.total_candidates > done else None),
    }


def generation_job_failures(job: GenerationJob) -> list[dict]:
    """Failed items (at most 100), and those retried since in a later job (state superseded, the
    reason kept with the retry's job)."""
    return list(job.job_items.filter(Q(state=GenerationJobItem.State.FAILED)
                                     | Q(state=GenerationJobItem.State.SUPERSEDED, error__contains="(retried in job"))
                .values("item_id", "error", "attempts", "state").order_by("item_id")[:100])


def mix_resolve(project: Project, entries: list[dict]) -> list[tuple[Checkpoint, float]]:
    """[{checkpoint, share}] as [(Checkpoint, share)] with checkpoints `project` may use, or a 400
    naming the others."""
    found = checkpoints_for_project(project).in_bulk([e["checkpoint"] for e in entries])
    unknown = [e["checkpoint"] for e in entries if e["checkpoint"] not in found]
    if unknown:
        raise ValidationFailed(
            f"No checkpoints {unknown} that project '{project.slug}' may use. A project uses the checkpoints it "
            "generated with or trained, the public ones, and those shared with it: a lead of this project who sees a "
            "checkpoint shares it with POST /api/v1/checkpoints/<id>/shares/.", code="no_checkpoint")
    return [(found[e["checkpoint"]], e["share"]) for e in entries]
