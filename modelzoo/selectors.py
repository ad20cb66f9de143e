"""Reads of the model zoo, each checking who asks (membership and role) here and nowhere else."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from engine.errors import Forbidden, NotFound
from engine.models import Membership, Project, Role
from engine.selectors import project_get_for_user, user_is_site_admin
from modelzoo.models import Candidate, Checkpoint, GenerationJob, GenerationJobItem, ProjectCheckpoint

REGISTRY_ROLES = (Role.TRAINER, Role.LEAD)


def user_may_use_registry(user) -> bool:
    """Trainers and leads of any project (and site admins) see and upload checkpoints."""
    if user_is_site_admin(user):
        return True
    return user.is_authenticated and Membership.objects.filter(user=user, role__in=REGISTRY_ROLES).exists()


def checkpoint_list_for_user(user) -> QuerySet[Checkpoint]:
    if not user_may_use_registry(user):
        raise Forbidden("The checkpoint registry is for trainers and leads.", code="role_required")
    return Checkpoint.objects.select_related("parent").order_by("-created_at", "-id")


def checkpoint_get_for_user(user, checkpoint_id: int) -> Checkpoint:
    checkpoint = checkpoint_list_for_user(user).filter(pk=checkpoint_id).first()
    if checkpoint is None:
        raise NotFound(f"No checkpoint {checkpoint_id}.")
    return checkpoint


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
    }


def generation_job_failures(job: GenerationJob) -> list[dict]:
    return list(job.job_items.filter(state=GenerationJobItem.State.FAILED)
                .values("item_id", "error", "attempts").order_by("item_id")[:100])
