"""API routes of the modelzoo app, under /api/v1/."""
from django.urls import path

from modelzoo import apis

urlpatterns = [
    path("checkpoints/", apis.CheckpointListCreateApi.as_view(), name="api-checkpoints"),
    path("checkpoints/<int:checkpoint_id>/", apis.CheckpointDetailApi.as_view(), name="api-checkpoint"),
    path("checkpoints/<int:checkpoint_id>/shares/", apis.CheckpointShareApi.as_view(), name="api-checkpoint-shares"),
    path("projects/<slug:slug>/checkpoints/", apis.ProjectMixApi.as_view(), name="api-project-mix"),
    path("candidates/<int:candidate_id>/<str:variant>", apis.CandidateFileApi.as_view(), name="api-candidate-file"),
]
