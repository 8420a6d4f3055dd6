"""What keeps the dashboard's pages to the people meant to see them.

The dashboard has no login: it is meant for a loopback address, or behind whatever guards
the network it is bound to. Two things a page served on loopback still needs:

- **Its own Host only.** A web page elsewhere can point a name it controls at 127.0.0.1
  (DNS rebinding) and read the dashboard as if from the same origin; answering only
  requests whose ``Host`` is one of ours (loopback names, and any name the user allows)
  closes that door.
- **Headers that confine what a page may do**: a content security policy (scripts and
  data from the dashboard itself; Plotly's WebGL traces compile code at run time, hence
  ``'unsafe-eval'``, and the pages' own inline scripts draw the figures), no framing by
  other sites, no MIME sniffing, no referrer sent elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Host names every dashboard answers (what a browser on the same machine sends).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def guarded(app: ASGIApp, allowed_hosts: Sequence[str] = ()) -> ASGIApp:
    """``app`` answering only :data:`LOOPBACK_HOSTS` and ``allowed_hosts`` (400 otherwise),
    with the security headers on every response."""
    hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
    return SecurityHeaders(TrustedHostMiddleware(app, allowed_hosts=hosts))
