"""Against a real `tumorlens serve` (uvicorn, raw sockets; issue 19): incomplete requests are closed
within the request timeout, open connections are bounded, every request has an access-log line
without the key or the filename, HEAD works, and eight concurrent decompression bombs raise the
server's resident memory by less than 1 GB."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from serve_support import API_KEY, LiveServer, head_slice, make_checkpoint, png

KEY = {"X-API-Key": API_KEY}
TIMEOUT = 3.0  # --request-timeout for this server (the default is 30 s)
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live-faults")
    srv = LiveServer(make_checkpoint(tmp / "model.pt", confident_class=0), tmp, "--request-timeout", str(TIMEOUT),
                     "--max-connections", str(MAX_CONNECTIONS))
    yield srv
    srv.stop()


def connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT + 30)
    return s


def seconds_until_closed(sock: socket.socket, trickle: bytes = b"", every: float = 0.5) -> float:
    """Send `trickle` one byte per `every` seconds (or nothing) until the server closes the socket."""
    t0 = time.monotonic()
    sock.settimeout(every if trickle else TIMEOUT + 30)
    i = 0
    while time.monotonic() - t0 < TIMEOUT + 30:
        if trickle:
            try:
                sock.send(trickle[i % len(trickle):i % len(trickle) + 1])
            except OSError:  # reset or broken pipe: closed
                return time.monotonic() - t0
            i += 1
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return float("inf")


def test_silent_connection_is_closed(server):
    with connect(server) as s:
        took = seconds_until_closed(s)
    assert TIMEOUT - 0.5 <= took <= TIMEOUT + 10, took


def test_headers_at_one_byte_per_half_second_are_cut(server):
    with connect(server) as s:
        took = seconds_until_closed(s, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1000)
    assert took <= TIMEOUT + 10, took


def test_body_shorter_than_its_content_length_is_cut(server):
    with connect(server) as s:
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
                "Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000\r\n\r\n").encode()
        s.sendall(head + b"--b0undary\r\n" + b"x" * 100)
        took = seconds_until_closed(s)
    assert took <= TIMEOUT + 10, took
    assert httpx.get(server.url + "/health").status_code == 200
    assert "Traceback" not in server.log()


def test_a_complete_request_is_answered_not_cut(server):
    with httpx.Client(base_url=server.url, headers=KEY, timeout=60) as c:
        r = c.post("/v1/explain?method=gradcam", files={"file": ("x.png", png(head_slice()))})
        time.sleep(TIMEOUT + 0.5)  # idle past the request timeout: the keep-alive timeout closes it, no error
        again = c.get("/health")
    assert r.status_code == 200 and again.status_code == 200


def test_open_connections_are_bounded(server):
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        r = httpx.get(server.url + "/health", timeout=10)
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_access_log_has_id_route_status_latency_but_no_key_or_filename(server):
    with httpx.Client(base_url=server.url, headers=KEY, timeout=60) as c:
        r = c.post("/v1/predict", files={"file": ("patient-jane-doe.png", png(head_slice()))})
        bad = c.post("/v1/predict", files={"file": ("patient-jane-doe.png", b"")})
    rid, bad_rid = r.headers["x-request-id"], bad.headers["x-request-id"]
    time.sleep(0.5)
    log = server.log()
    assert re.search(rf"tumorlens\.serve\.access: {rid} POST /v1/predict 200 [\d.]+ms", log), log[-2000:]
    assert re.search(rf"{bad_rid} POST /v1/predict 422 ", log)
    assert API_KEY not in log and "jane-doe" not in log


def test_head_on_a_real_server(server):
    for path in ("/health", "/"):
        r = httpx.head(server.url + path)
        assert r.status_code == 200 and r.content == b""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def decompression_bomb() -> bytes:
    """A 4096 x 4096 RGBA 16-bit PNG of ~130 KB (issue 19's bomb): ~480 MB to decode."""
    a = np.zeros((4096, 4096, 4), np.uint16)
    a[..., 3] = 65535
    a[::64, :, 0] = 40000
    return cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def test_eight_concurrent_decompression_bombs_raise_memory_by_less_than_1_gb(server):
    bomb = decompression_bomb()
    assert len(bomb) < 300_000
    before = rss_mb(server.proc.pid)
    peak = {"mb": before}
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak["mb"] = max(peak["mb"], rss_mb(server.proc.pid))
            time.sleep(0.05)

    statuses = []

    def send():
        r = httpx.post(server.url + "/v1/predict", files={"file": ("b.png", bomb)}, headers=KEY, timeout=600)
        statuses.append(r.status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send) for _ in range(8)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    done.set()
    watcher.join()
    assert len(statuses) == 8 and all(s < 500 or s == 503 for s in statuses), statuses
    assert peak["mb"] - before < 1024, (before, peak["mb"], statuses)
    assert server.alive()
