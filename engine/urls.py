from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engine import apis, views
from engine.ingest import apis as ingest_apis

api_v1 = [
    path("auth/token/", apis.TokenLoginApi.as_view(), name="api-token-login"),
    path("auth/tokens/", apis.TokenListCreateApi.as_view(), name="api-tokens"),
    path("auth/tokens/<int:token_id>/", apis.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("projects/", apis.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<slug:slug>/members/", apis.MemberListApi.as_view(), name="api-members"),
    path("projects/<slug:slug>/members/<str:username>/<str:role>/", apis.MemberDeleteApi.as_view(),
         name="api-member-delete"),
    path("projects/<slug:slug>/images/", apis.ImageListUploadApi.as_view(), name="api-images"),
    path("projects/<slug:slug>/images/<int:image_id>/", apis.ImageDetailApi.as_view(), name="api-image"),
    path("projects/<slug:slug>/images/<int:image_id>/<str:variant>", apis.ImageFileApi.as_view(),
         name="api-image-file"),
    path("projects/<slug:slug>/masks/", apis.MaskListApi.as_view(), name="api-masks"),
    path("projects/<slug:slug>/masks/<int:mask_id>.png", apis.MaskPngApi.as_view(), name="api-mask-png"),
    path("projects/<slug:slug>/imports/", ingest_apis.ImportListCreateApi.as_view(), name="api-imports"),
    path("projects/<slug:slug>/imports/<int:job_id>/", ingest_apis.ImportDetailApi.as_view(), name="api-import"),
    path("projects/<slug:slug>/imports/<int:job_id>/entries/", ingest_apis.ImportEntriesApi.as_view(),
         name="api-import-entries"),
    path("projects/<slug:slug>/imports/<int:job_id>/retry/", ingest_apis.ImportRetryApi.as_view(),
         name="api-import-retry"),
    path("projects/<slug:slug>/uploads/", ingest_apis.UploadCreateApi.as_view(), name="api-uploads"),
    path("projects/<slug:slug>/uploads/<int:upload_id>/", ingest_apis.UploadDetailApi.as_view(), name="api-upload"),
    path("projects/<slug:slug>/uploads/<int:upload_id>/files/<int:index>", ingest_apis.UploadChunkApi.as_view(),
         name="api-upload-chunk"),
    path("projects/<slug:slug>/uploads/<int:upload_id>/complete/", ingest_apis.UploadCompleteApi.as_view(),
         name="api-upload-complete"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    # First: the annotation queue's routes are the hot ones (resolution tries patterns in order,
    # and no other pattern matches their paths).
    path("api/v1/", include("annotation.urls")),
    path("", views.project_list, name="project-list"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/v1/", include("modelzoo.urls")),
    path("api/v1/", include("engine.exports.urls")),
    path("api/v1/", include("engine.rounds.urls")),
    path("", include("annotation.workbench_urls")),
    path("console/", include("engine.console.urls")),
    path("", include("engine.stats.urls")),
]

# JSON with the error shape under /api/, Django's pages elsewhere (engine.errors).
handler400 = "engine.errors.bad_request"
handler403 = "engine.errors.permission_denied"
handler404 = "engine.errors.page_not_found"
handler500 = "engine.errors.server_error"
