from django.urls import path

from engine.rounds import apis

urlpatterns = [
    path("projects/<slug:slug>/rounds/", apis.RoundListOpenApi.as_view(), name="api-rounds"),
    path("projects/<slug:slug>/rounds/<int:index>/close", apis.RoundCloseApi.as_view(), name="api-round-close"),
    path("projects/<slug:slug>/rounds/<int:index>/recover", apis.RoundRecoverApi.as_view(), name="api-round-recover"),
    path("projects/<slug:slug>/rounds/<int:index>/checkpoint", apis.RoundCheckpointApi.as_view(),
         name="api-round-checkpoint"),
    path("projects/<slug:slug>/training-runs/", apis.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("projects/<slug:slug>/training-runs/<int:run_id>/", apis.TrainingRunDetailApi.as_view(),
         name="api-training-run"),
    path("projects/<slug:slug>/generation-jobs/", apis.GenerationJobListCreateApi.as_view(),
         name="api-generation-jobs"),
    path("projects/<slug:slug>/generation-jobs/<int:job_id>/", apis.GenerationJobDetailApi.as_view(),
         name="api-generation-job"),
    path("projects/<slug:slug>/generation-jobs/<int:job_id>/retry", apis.GenerationJobRetryApi.as_view(),
         name="api-generation-job-retry"),
]
