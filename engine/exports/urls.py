from django.urls import path

from engine.exports import apis

urlpatterns = [
    path("projects/<slug:slug>/snapshots/", apis.SnapshotListCreateApi.as_view(), name="api-snapshots"),
    path("snapshots/<int:snapshot_id>/", apis.SnapshotDetailApi.as_view(), name="api-snapshot"),
    path("snapshots/<int:snapshot_id>/changes/", apis.SnapshotChangesApi.as_view(), name="api-snapshot-changes"),
    path("snapshots/<int:snapshot_id>/build/", apis.SnapshotBuildApi.as_view(), name="api-snapshot-build"),
    path("snapshots/<int:snapshot_id>/files/<path:path>", apis.SnapshotFileApi.as_view(), name="api-snapshot-file"),
]
