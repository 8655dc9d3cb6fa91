"""Every failure the service knows about becomes one JSON shape: {"error": {"code", "message"}}.

Why a catch-all handler too: an unexpected bug must still answer in that shape, with a request id
the operator can find in the log, and never with a stack trace (which would leak paths and code).
"""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tumorlens.serve")


# Library messages quote Python objects ("cannot identify image file <_io.BytesIO object at
# 0x7f...>"): the address tells a caller nothing but the process's memory layout.
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def clean_message(message: str) -> str:
    """A message fit for a client: object reprs named by type, no memory addresses."""
    message = _OBJECT_REPR.sub(lambda m: f"<{m.group(1).rsplit('.', 1)[-1]}>", str(message))
    return _ADDRESS.sub("(address)", message)


class ServiceError(Exception):
    """A known, user-facing failure: an HTTP status, a stable machine code, a plain message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        message = clean_message(message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, request_id: str | None = None) -> dict:
    body = {"error": {"code": code, "message": clean_message(message)}}
    if request_id:
        body["error"]["request_id"] = request_id
    return body


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = uuid.uuid4().hex
    return rid


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return JSONResponse(
            error_body(exc.code, exc.message, request_id_of(request)), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        # FastAPI's default echoes the raw input back; say which parameter is wrong, nothing more.
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse(
            error_body("invalid_request", "; ".join(parts) or "invalid request", request_id_of(request)),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(
            error_body(code, message, request_id_of(request)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        rid = request_id_of(request)
        log.exception("unexpected error in %s %s (request %s)", request.method, request.url.path, rid)
        return JSONResponse(
            error_body("internal_error", f"unexpected server error; the operator can find request {rid} in the log", rid),
            status_code=500,
        )
