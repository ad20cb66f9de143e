"""API routes of the modelzoo app, under /api/v1/."""
from django.urls import path

from modelzoo import apis

urlpatterns = [
    path("checkpoints/", apis.CheckpointListCreateApi.as_view(), name="api-checkpoints"),
    path("checkpoints/<int:checkpoint_id>/", apis.CheckpointDetailApi.as_view(), name="api-checkpoint"),
    path("projects/<slug:slug>/checkpoints/", apis.ProjectMixApi.as_view(), name="api-project-mix"),
    path("projects/<slug:slug>/generation-jobs/", apis.GenerationJobListCreateApi.as_view(),
         name="api-generation-jobs"),
    path("projects/<slug:slug>/generation-jobs/<int:job_id>/", apis.GenerationJobDetailApi.as_view(),
         name="api-generation-job"),
    path("candidates/<int:candidate_id>/<str:variant>", apis.CandidateFileApi.as_view(), name="api-candidate-file"),
]
