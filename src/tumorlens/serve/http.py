"""Running the app under uvicorn with connection limits and a request timeout.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but not a connection
that is still sending its request: a socket that sends nothing, headers or a body at 1 byte per
2 s, or a Content-Length larger than the body it sends was held open for minutes (issue 19). The
h11 protocol class below (uvicorn's public `http=` option takes a protocol class) gives every
request `request_timeout` seconds from the connection's start, or from the previous response, to
arrive in full; then the connection is closed. A request that has fully arrived is never cut,
however long the model takes (slow explainers have their own budget, slow_lane.py).
`limit_concurrency` makes uvicorn answer 503 beyond `max_connections` open connections.
"""

from __future__ import annotations

import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("tumorlens.serve")
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; h11's own default, stated here


class TimeoutH11Protocol(H11Protocol):
    request_timeout: float = 30.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_request_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_request_timer()  # the next request on this connection gets its own time

    def _arm_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _cancel_request_timer(self) -> None:
        timer = getattr(self, "_request_timer", None)
        if timer is not None:
            timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or self.conn.their_state in _RECEIVED:
            return  # the request is in; the app is working on it
        prefix = "%s:%d " % self.client if self.client else ""
        log.warning("%sclosed: the request did not arrive in full within %g s", prefix, self.request_timeout)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()  # an app waiting for the body sees the disconnect
        self.transport.close()


def protocol_class(request_timeout: float) -> type[TimeoutH11Protocol]:
    return type("TumorlensH11Protocol", (TimeoutH11Protocol,), {"request_timeout": float(request_timeout)})


def uvicorn_config(app, host: str, port: int, request_timeout: float, max_connections: int, **kwargs):
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, http=protocol_class(request_timeout), limit_concurrency=max_connections,
        timeout_keep_alive=min(5, max(1, int(request_timeout))), h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level="info", access_log=False,  # the app writes its own access log (middleware.py)
        **kwargs)


def run(app, host: str, port: int, request_timeout: float, max_connections: int) -> None:
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, request_timeout, max_connections)).run()
