"""Routes of the dashboard: the page, the figures under /api/v1/, and /metrics."""
from django.urls import include, path

from engine.stats import apis, metrics, views

api = [
    path("throughput", apis.ThroughputApi.as_view(), name="api-stats-throughput"),
    path("queue", apis.QueueApi.as_view(), name="api-stats-queue"),
    path("timeseries", apis.TimeseriesApi.as_view(), name="api-stats-timeseries"),
    path("annotators", apis.AnnotatorsApi.as_view(), name="api-stats-annotators"),
    path("acceptance/rounds", apis.AcceptanceRoundsApi.as_view(), name="api-stats-acceptance-rounds"),
    path("acceptance/checkpoints", apis.AcceptanceCheckpointsApi.as_view(), name="api-stats-acceptance-checkpoints"),
    path("ratings", apis.RatingsApi.as_view(), name="api-stats-ratings"),
    path("generation", apis.GenerationApi.as_view(), name="api-stats-generation"),
    path("workers", apis.WorkersApi.as_view(), name="api-stats-workers"),
]

urlpatterns = [
    path("projects/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
    path("api/v1/projects/<slug:slug>/stats/", include(api)),
    path("metrics", metrics.metrics_view, name="metrics"),
]
