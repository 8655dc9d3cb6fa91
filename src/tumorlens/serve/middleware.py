"""One plain-ASGI middleware for what every response gets: a request id (request.state and the
X-Request-ID header), security headers, and an access-log line.

Security headers: `X-Content-Type-Options: nosniff` everywhere; `Cache-Control: no-store` on the
API's answers (predictions are about someone's scan: no proxy or browser cache may keep them);
a Content-Security-Policy on the docs pages that allows only this server and the docs' own inline
script, by its hash. The page at / sets its own, stricter policy (routes/info.py).
Access log (logger tumorlens.serve.access): request id, method, route template, status, latency;
never the API key, the filename or the query string.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid

access_log = logging.getLogger("tumorlens.serve.access")

DOCS_PATHS = ("/docs", "/redoc")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def docs_csp(html: bytes) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'"
                      for s in _INLINE_SCRIPT.findall(html))
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class ServiceMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        path = scope.get("path", "")
        docs = path in DOCS_PATHS
        status = {"code": 0}
        held: list[dict] = []  # the docs page is held back until its body is known, for its CSP

        async def wrapped_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control" or not
                           path.startswith("/v1/")]
                headers += [(b"x-request-id", rid.encode()), (b"x-content-type-options", b"nosniff")]
                if path.startswith("/v1/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
                if docs:
                    held.append(message)
                    return
            elif docs and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                start, *bodies = held
                html = b"".join(m.get("body", b"") for m in bodies)
                start["headers"] = [*start["headers"], (b"content-security-policy", docs_csp(html).encode())]
                await send(start)
                await send({"type": "http.response.body", "body": html})
                return
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            route = scope.get("route")
            access_log.info("%s %s %s %d %.1fms", rid, scope.get("method"), getattr(route, "path", None) or "(no route)",
                            status["code"], 1000 * (time.perf_counter() - t0))
