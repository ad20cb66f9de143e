"""API token authentication, failed-login throttling and the client address behind a proxy."""
from __future__ import annotations

import hashlib
import math
import time
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
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


# Failed logins are counted twice. Per username: LOGIN_FAILURE_LIMIT failures within
# LOGIN_FAILURE_WINDOW_S lock that username until the window has passed. Per client address
# (everyone behind a NAT or a proxy shares one): the first LOGIN_ADDRESS_FREE_FAILURES failures
# cost nothing, then each further one holds the address for a delay that doubles from 1 s up to
# LOGIN_ADDRESS_MAX_DELAY_S, so a guesser is slowed to one try a minute while the people beside
# it wait seconds, never the whole window. A success resets neither count: an attacker's own
# account must not wipe its record.

def _digest(value: str) -> str:
    return hashlib.sha256(value.encode(errors="replace")).hexdigest()


def _user_keys(username: str) -> tuple[str, str]:
    h = _digest(username.lower())
    return f"login-fail:user:{h}", f"login-lock:user:{h}"


def _address_keys(client: str) -> tuple[str, str]:
    h = _digest(client)
    return f"login-fail:addr:{h}", f"login-wait:addr:{h}"


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    try:
        return tuple(ip_network(n.strip(), strict=False) for n in trusted if n.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from None


def _parse(address: str) -> IPv4Address | IPv6Address | None:
    address = address.strip()
    if address.startswith("[") and "]" in address:  # [v6]:port
        address = address[1:address.index("]")]
    elif address.count(":") == 1:  # v4:port
        address = address.split(":", 1)[0]
    try:
        return ip_address(address)
    except ValueError:
        return None


def _client_key(address: IPv4Address | IPv6Address) -> str:
    # One IPv6 host usually holds a whole /64: count the /64, or each guess could come from a new address.
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def client_address(request) -> str:
    """The address failed logins are counted by: the peer, or behind a trusted proxy the client it names.

    X-Forwarded-For is believed only when the peer is in TRUSTED_PROXIES, and then only up to the
    right-most address that is not itself a trusted proxy: anything left of that was written by the
    client and can be anything.
    """
    peer = _parse(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return "unknown"
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not trusted or not forwarded or not any(peer in n for n in trusted):
        return _client_key(peer)
    client = peer
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = _parse(hop)
        if address is None:  # garbage in the header: the last hop we could read is the answer
            break
        client = address
        if not any(address in n for n in trusted):
            break
    return _client_key(client)


def login_check_throttle(*, username: str, client: str) -> None:
    """Raise RateLimited while this username is locked or this address must wait."""
    now = time.time()
    waits = cache.get_many([_user_keys(username)[1], _address_keys(client)[1]])  # one round trip
    until = max(waits.values(), default=None)
    if until is not None and until > now:
        raise RateLimited(
            "Too many failed logins; wait before trying again.",
            retry_after_s=max(1, math.ceil(until - now)),
        )


def _count(key: str, window_s: int) -> int:
    if cache.add(key, 1, timeout=window_s):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_s)
        return 1


def login_record_failure(*, username: str, client: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_S
    now = time.time()
    user_count, user_lock = _user_keys(username)
    if _count(user_count, window) >= settings.LOGIN_FAILURE_LIMIT:
        cache.set(user_lock, now + window, timeout=window)
    address_count, address_wait = _address_keys(client)
    over = _count(address_count, window) - settings.LOGIN_ADDRESS_FREE_FAILURES
    if over > 0:
        delay = min(2 ** min(over - 1, 30), settings.LOGIN_ADDRESS_MAX_DELAY_S)
        cache.set(address_wait, now + delay, timeout=math.ceil(delay))


def login_authenticate(*, request, username: str, password: str):
    """Throttled authenticate(): returns the user or None; raises RateLimited when locked out."""
    client = client_address(request)
    login_check_throttle(username=username, client=client)
    user = authenticate(request, username=username, password=password)
    if user is None:
        login_record_failure(username=username, client=client)
    return user
