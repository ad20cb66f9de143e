"""Failed-login throttling: per username a lock, per client address a growing delay, behind a proxy
the client's own address."""
from __future__ import annotations

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from engine import auth
from engine.models import Role

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def login(username, password="wrong", **meta):
    return APIClient().post("/api/v1/auth/token/", {"username": username, "password": password}, format="json",
                            **meta)


def test_wrong_passwords_for_many_usernames_do_not_lock_out_the_next_user(member):
    for k in range(20):
        assert login(f"guess{k}").status_code == 400
    user = member(Role.ANNOTATOR)
    assert login(user.username, PASSWORD).status_code == 201


def test_failures_for_one_username_lock_that_username_only(member, settings):
    victim, bystander = member(Role.ANNOTATOR), member(Role.ANNOTATOR)
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert login(victim.username).status_code == 400
    locked = login(victim.username, PASSWORD)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(locked["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_S
    assert login(victim.username.upper(), PASSWORD).status_code == 429  # usernames count case-blind
    assert login(bystander.username, PASSWORD).status_code == 201


def test_an_address_past_its_free_failures_waits_a_doubling_delay(member, settings, monkeypatch):
    settings.LOGIN_ADDRESS_FREE_FAILURES = 3
    settings.LOGIN_ADDRESS_MAX_DELAY_S = 4
    now = [1_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    user = member(Role.ANNOTATOR)
    for k in range(3):
        assert login(f"guess{k}").status_code == 400
    assert login("guess3").status_code == 400  # the first failure over the allowance: 1 s
    held = login(user.username, PASSWORD)
    assert held.status_code == 429 and held["Retry-After"] == "1"
    for expected in ("2", "4", "4"):  # doubling, up to LOGIN_ADDRESS_MAX_DELAY_S
        now[0] += 60
        assert login("guess").status_code == 400
        assert login(user.username, PASSWORD)["Retry-After"] == expected
    now[0] += 4
    assert login(user.username, PASSWORD).status_code == 201  # slowed down, never locked out


def test_behind_a_trusted_proxy_clients_are_counted_apart(member, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_ADDRESS_FREE_FAILURES = 2
    user = member(Role.ANNOTATOR)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for k in range(3):
        # The client may put anything left of what the proxy appends: only the right-most hop counts.
        forwarded = f"198.51.100.{k}, 203.0.113.1"
        assert login(f"guess{k}", HTTP_X_FORWARDED_FOR=forwarded, **proxy).status_code == 400
    assert login(user.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy).status_code == 429
    assert login(user.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.2", **proxy).status_code == 201


def test_an_untrusted_senders_forwarded_header_is_ignored(member, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_ADDRESS_FREE_FAILURES = 2
    user = member(Role.ANNOTATOR)
    for k in range(3):
        assert login(f"guess{k}", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{k}").status_code == 400
    held = login(user.username, PASSWORD, REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert held.status_code == 429


@pytest.mark.parametrize("trusted, remote, forwarded, expected", [
    ([], "10.0.0.2", "203.0.113.1", "10.0.0.2"),
    (["10.0.0.2"], "10.0.0.2", "203.0.113.1", "203.0.113.1"),
    (["10.0.0.0/8"], "10.0.0.2", "203.0.113.1, 10.0.0.7", "203.0.113.1"),  # two proxies
    (["10.0.0.0/8"], "10.0.0.2", "evil, 203.0.113.1", "203.0.113.1"),
    (["10.0.0.0/8"], "10.0.0.2", "", "10.0.0.2"),
    (["10.0.0.0/8"], "10.0.0.2", "not-an-address", "10.0.0.2"),
    (["10.0.0.0/8"], "10.0.0.2", "203.0.113.1:4711", "203.0.113.1"),
    (["::1"], "::1", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one IPv6 host holds a /64
])
def test_client_address(settings, trusted, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert auth.client_address(request) == expected
