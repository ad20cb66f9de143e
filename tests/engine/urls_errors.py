"""The engine's URLs plus plain Django views (not DRF's), for the error-shape tests: one under
/api/ that reads a form (CSRF-checked, size-limited by Django), and views that fail or refuse."""
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import path

from engine.urls import handler400, handler403, handler404, handler500, urlpatterns as engine_urlpatterns  # noqa: F401


def plain_form(request):
    return HttpResponse(f"{len(request.POST)} fields")


def boom(request):
    raise RuntimeError("a bug in a view")


def forbidden(request):
    raise PermissionDenied


urlpatterns = [
    path("api/v1/test/plain-form", plain_form),
    path("api/v1/test/boom", boom),
    path("api/v1/test/forbidden", forbidden),
    path("test/boom", boom),
    *engine_urlpatterns,
]
