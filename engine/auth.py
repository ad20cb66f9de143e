"""API token authentication and failed-login throttling."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework import authentication, exceptions

from engine import db
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
        token = token_with_user(hash_key(key))
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


_TOKEN_SQL: dict[str, tuple] = {}


def _token_statement():
    """The statement of `token_with_user` and the converters of its columns, once per backend."""
    cached = _TOKEN_SQL.get(connection.vendor)
    if cached is None:
        User = get_user_model()
        q = connection.ops.quote_name
        user_fields = User._meta.concrete_fields
        cols = ", ".join(f"u.{q(f.column)}" for f in user_fields)
        statement = (
            f"SELECT t.id, t.revoked_at, t.last_used_at, {cols} FROM {ApiToken._meta.db_table} t "
            f"JOIN {User._meta.db_table} u ON u.{q(User._meta.pk.column)} = t.user_id WHERE t.key_sha256 = %s"
        )
        fields = [ApiToken._meta.get_field("id"), ApiToken._meta.get_field("revoked_at"),
                  ApiToken._meta.get_field("last_used_at"), *user_fields]
        converters = []  # what the ORM would apply (SQLite returns datetimes as text, for one)
        for k, field in enumerate(fields):
            found = (connection.ops.get_db_converters(field.get_col(field.model._meta.db_table))
                     + field.get_db_converters(connection))
            if found:
                converters.append((k, field, found))
        cached = _TOKEN_SQL[connection.vendor] = (statement, converters, [f.attname for f in user_fields])
    return cached


def token_with_user(key_sha256: str) -> ApiToken | None:
    """The token with this key hash and its user, in one written-out statement.

    Every API request pays this lookup, so it skips the ORM's statement building (about 0.5 ms
    of Python, more than the rest of authentication); it is not cached, so that a revoked token
    or a deactivated user is refused at once. The token comes with id, user, revoked_at and
    last_used_at loaded (other fields load on access).
    """
    statement, converters, user_names = _token_statement()
    row = db.fetchone(statement, [key_sha256])
    if row is None:
        return None
    values = list(row)
    for k, field, found in converters:
        for converter in found:
            values[k] = converter(values[k], field, connection)
    user = get_user_model().from_db(connection.alias, user_names, values[3:])
    loaded = {"id": values[0], "user_id": user.pk, "revoked_at": values[1], "last_used_at": values[2]}
    names = [f.attname for f in ApiToken._meta.concrete_fields if f.attname in loaded]  # from_db wants field order
    token = ApiToken.from_db(connection.alias, names, [loaded[n] for n in names])
    token.user = user
    return token


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
