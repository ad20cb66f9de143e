"""Content-Security-Policy on every response, from the CONTENT_SECURITY_POLICY setting.

Django 5.2 has no CSP of its own (django.middleware.csp arrived in 6.0). The policy is a dict of
directive -> sources; the source "'nonce'" stands for a fresh per-request nonce, which templates
put on the few inline elements a page cannot avoid (`nonce="{{ request.csp_nonce }}"`: Swagger
UI's start-up script). The engine's own pages load only files: their CSS from the apps' static
folders, their scripts from the Vite build.
"""
from __future__ import annotations

import secrets

from django.conf import settings

NONCE = "'nonce'"


def policy_header(policy: dict[str, list[str]]) -> str:
    """The header value, with "{nonce}" where the request's nonce goes."""
    return "; ".join(
        " ".join([directive, *("'nonce-{nonce}'" if s == NONCE else s for s in sources)]).strip()
        for directive, sources in policy.items()
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Read per request (cheap), so that a test's `settings` override applies at once.
        policy = settings.CONTENT_SECURITY_POLICY
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if not policy:
            return response
        name = ("Content-Security-Policy-Report-Only" if settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
                else "Content-Security-Policy")
        if name not in response:  # a view may set its own
            response[name] = policy_header(policy).replace("{nonce}", request.csp_nonce)
        return response
