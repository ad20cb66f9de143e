"""Server-rendered pages: login, the project list, a project's images and masks."""
from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.shortcuts import render

from engine import selectors
from engine.auth import client_address, login_check_throttle, login_record_failure
from engine.errors import EngineError, RateLimited


class ThrottledAuthenticationForm(AuthenticationForm):
    throttled: RateLimited | None = None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        client = client_address(self.request)
        try:
            login_check_throttle(username=username, client=client)
        except RateLimited as exc:
            self.throttled = exc
            raise forms.ValidationError(exc.message, code="throttled") from None
        try:
            return super().clean()
        except forms.ValidationError:
            login_record_failure(username=username, client=client)
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled is not None:  # the form again, as the API answers: 429 and when to retry
            response.status_code = 429
            response["Retry-After"] = str(form.throttled.retry_after_s)
        return response


@login_required
def project_list(request):
    projects = selectors.projects_for_user(request.user)
    return render(request, "engine/project_list.html", {"projects": projects})


@login_required
def project_detail(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug)
    except EngineError as exc:
        return render(request, "engine/error.html", {"message": exc.message}, status=exc.status)
    page = Paginator(selectors.image_list(project).prefetch_related("masks"), 24).get_page(request.GET.get("page"))
    return render(request, "engine/project_detail.html", {"project": project, "page": page})
