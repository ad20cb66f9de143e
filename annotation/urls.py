"""API routes of the annotation app, under /api/v1/ (contract: docs/annotation-api.md)."""
from django.urls import path

from annotation import apis

urlpatterns = [
    path("projects/<slug:slug>/next-item", apis.NextItemApi.as_view(), name="api-next-item"),
    path("projects/<slug:slug>/judgements", apis.JudgementListApi.as_view(), name="api-judgements"),
    path("projects/<slug:slug>/review", apis.ReviewQueueApi.as_view(), name="api-review"),
    path("projects/<slug:slug>/quality", apis.AnnotatorQualityApi.as_view(), name="api-quality"),
    path("projects/<slug:slug>/quality/me", apis.MyQualityApi.as_view(), name="api-quality-me"),
    path("projects/<slug:slug>/progress", apis.ProgressApi.as_view(), name="api-progress"),
    path("projects/<slug:slug>/scenes/<int:image_id>.zip", apis.SceneDownloadApi.as_view(),
         name="api-scene-download"),
    path("projects/<slug:slug>/artist-queue", apis.ArtistQueueApi.as_view(), name="api-artist-queue"),
    path("leases/<int:lease_id>/renew", apis.LeaseRenewApi.as_view(), name="api-lease-renew"),
    path("leases/<int:lease_id>/release", apis.LeaseReleaseApi.as_view(), name="api-lease-release"),
    path("items/<int:item_id>/judgements", apis.JudgementSubmitApi.as_view(), name="api-judgement-submit"),
    path("items/<int:item_id>/skip", apis.SkipApi.as_view(), name="api-skip"),
    path("items/<int:item_id>/flag", apis.FlagApi.as_view(), name="api-flag"),
    path("items/<int:item_id>/reopen", apis.ItemReopenApi.as_view(), name="api-item-reopen"),
    path("items/<int:item_id>/gold", apis.ItemGoldApi.as_view(), name="api-item-gold"),
    path("items/<int:item_id>/artist-mesh", apis.ArtistMeshApi.as_view(), name="api-artist-mesh"),
    path("judgements/<int:judgement_id>", apis.JudgementDetailApi.as_view(), name="api-judgement"),
    path("judgements/<int:judgement_id>/reject", apis.JudgementRejectApi.as_view(), name="api-judgement-reject"),
    path("judgements/<int:judgement_id>/restore", apis.JudgementRestoreApi.as_view(), name="api-judgement-restore"),
    path("judgements/<int:judgement_id>/replay", apis.JudgementReplayApi.as_view(), name="api-judgement-replay"),
]
