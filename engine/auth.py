"""API token authentication and failed-login throttling."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.utils import timezone
from rest_framework import authentication, exceptions

from engine.errors import RateLimited
from engine.models import ApiToken


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`) with a personal, revocable token."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'.")
        key = header[1].decode(errors="replace")
        token = ApiToken.objects.select_related("user").filter(key_sha256=hash_key(key)).first()
        if token is None or token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token.user, token)

    def authenticate_header(self, request):
        return "Token"


def _failure_keys(username: str, client: str) -> tuple[str, str]:
    return (
        f"login-fail:user:{hashlib.sha256(username.lower().encode()).hexdigest()}",
        f"login-fail:ip:{client}",
    )


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def login_check_throttle(*, username: str, client: str) -> None:
    """Raise RateLimited when this username or address has failed too often recently."""
    user_key, ip_key = _failure_keys(username, client)
    limit = settings.LOGIN_FAILURE_LIMIT
    if (cache.get(user_key) or 0) >= limit or (cache.get(ip_key) or 0) >= 4 * limit:
        raise RateLimited(
            "Too many failed logins; wait before trying again.",
            retry_after_s=settings.LOGIN_FAILURE_WINDOW_S,
        )


def login_record_failure(*, username: str, client: str) -> None:
    for key in _failure_keys(username, client):
        if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_S):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_S)


def login_authenticate(*, request, username: str, password: str):
    """Throttled authenticate(): returns the user or None; raises RateLimited when locked out."""
    client = client_address(request)
    login_check_throttle(username=username, client=client)
    user = authenticate(request, username=username, password=password)
    if user is None:
        login_record_failure(username=username, client=client)
    return user
