"""The Content-Security-Policy (engine/csp.py): on every response, a nonce per request, and pages
that need no inline script or style (the browser tests check that Chromium reports no violation)."""
from __future__ import annotations

import re

import pytest

from tests.engine.factories import UserFactory

pytestmark = pytest.mark.django_db


def nonce_of(response) -> str:
    return re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)


def test_every_response_carries_the_policy_with_a_fresh_nonce(client, api):
    page = client.get("/accounts/login/")
    policy = page["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "object-src 'none'" in policy
    # No inline code and no JavaScript eval; 'wasm-unsafe-eval' (Spark's WebAssembly) is another token.
    tokens = policy.replace(";", " ").split()
    assert "'unsafe-inline'" not in tokens and "'unsafe-eval'" not in tokens
    assert nonce_of(page) != nonce_of(client.get("/accounts/login/"))
    assert "Content-Security-Policy" in api().get("/api/v1/projects/")  # JSON too (and the 401 it is)


def test_the_pages_have_no_inline_style_or_script(client, project):
    client.force_login(UserFactory())
    for url in ("/accounts/login/", "/"):
        html = client.get(url, follow=True).content.decode()
        assert "<style" not in html and 'style="' not in html, url
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html), url


def test_swagger_ui_runs_under_the_policy_by_its_nonce(client):
    client.force_login(UserFactory())
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html, nonce = docs.content.decode(), nonce_of(docs)
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline and all(f'nonce="{nonce}"' in attrs for _, attrs in inline)


def test_the_policy_is_a_setting(client, settings):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = True
    response = client.get("/accounts/login/")
    assert "Content-Security-Policy" not in response and "default-src" in response["Content-Security-Policy-Report-Only"]
    settings.CONTENT_SECURITY_POLICY = {"default-src": ["'self'", "https://cdn.example.org"]}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = False
    assert client.get("/accounts/login/")["Content-Security-Policy"] == "default-src 'self' https://cdn.example.org"
    settings.CONTENT_SECURITY_POLICY = {}
    assert "Content-Security-Policy" not in client.get("/accounts/login/")
