"""Load and honesty figures for `tumorlens serve`, on the real data in ../shared/data.

    .venv/bin/python benchmarks/bench_service.py [--model CKPT] [--predict 2000] [--explain 400]
        [--clients 4] [--only load,checks,isolation,bombs,soak] [--soak-seconds 120]

load: a real uvicorn (`tumorlens serve`) on 127.0.0.1 with the default model, a fixed number of
  requests from 4 concurrent clients (threads, one httpx connection each) uploading Kaggle Testing
  and figshare slices: errors, p50/p95 latency of /v1/predict and /v1/explain (Grad-CAM),
  throughput, /health latency during the load (is the event loop free?), server RSS before and
  after the 2,000 predictions.
checks: how often the input check wrongly flags a real MRI slice (all Kaggle and figshare slices),
  and how much of the expert tumor masks the tumor-candidate rule covers (all figshare slices).
isolation (issue 19): /v1/predict p50/p95 from 4 clients while one Score-CAM request runs (it
  runs in the slow lane), against the same clients without it.
bombs: server RSS under eight concurrent decompression bombs (4096 x 4096 RGBA 16-bit PNGs of
  ~140 KB, then gzipped 512 x 512 x 200 float32 NIfTI volumes of ~200 KB).
soak: 8 clients for 2 minutes, mixed good uploads (200 expected), bad uploads (4xx expected) and
  Grad-CAM explanations; errors = any other answer or a failed connection; RSS every 5 s.
Each part writes its own `## bench_service.py <part>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import FIGSHARE, KAGGLE, SHARED_DATA as SHARED  # noqa: E402,F401


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc), to report CPU per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    return time.process_time()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """The multipart/form-data body of one upload, built once: the 4 client threads share the 2 cores
    with the server, so they should not spend them re-encoding the same body for every request.
    The bytes on the wire are what httpx's files= would send."""
    boundary = uuid.uuid4().hex  # random: cannot occur in the file by chance
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


class Server:
    def __init__(self, model: Path | None, tmp: Path, threads: int | None, workers: int | None, extra: tuple = ()):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tumorlens.cli", "serve", "--port", str(self.port), "--no-auth",
               "--db", f"sqlite:///{tmp / 'audit.sqlite'}"]
        if model:
            cmd += ["--model", str(model)]
        if threads:
            cmd += ["--threads", str(threads)]
        if workers:
            cmd += ["--workers", str(workers)]
        cmd += list(extra)
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})
        for _ in range(600):
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                self.health = httpx.get(self.url + "/health", timeout=1).json()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("server did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)  # generous: on a loaded machine shutdown takes its time
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_load(url: str, path: str, payloads: list[tuple[str, bytes]], n: int, clients: int, desc: str):
    """n requests from `clients` threads; returns (latencies, errors, wall seconds, health latencies)."""
    lat: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))
    lock = threading.Lock()
    bar = tqdm(total=n, desc=desc, unit="req")
    stop = threading.Event()
    health: list[float] = []

    bodies = [multipart(name, data) for name, data in payloads]

    def worker():
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body, content_type = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    r = c.post(path, content=body, headers={"content-type": content_type})
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{r.status_code} {r.text[:120]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        lat.append(dt)
                    bar.update(1)

    def prober():  # the event loop must keep answering while the model is busy
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                c.get("/health")
                health.append(time.perf_counter() - t0)
                stop.wait(0.1)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    probe = threading.Thread(target=prober)
    t0 = time.perf_counter()
    probe.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    probe.join()
    bar.close()
    return lat, errors, wall, health


def load_payloads(k: int, seed: int = 0) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    kag = sorted((KAGGLE / "Testing").glob("*/*.jpg"))
    fig = sorted((FIGSHARE / "images").glob("*.png"))
    files = rng.sample(kag, k // 2) + rng.sample(fig, k - k // 2)
    return [(f.name, f.read_bytes()) for f in files]


def bench_load(args) -> list[str]:
    payloads = load_payloads(200)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(args.model, Path(tmp), args.threads, args.workers)
        load_before = os.getloadavg()[0]
        try:
            model = srv.health["model"]
            run_load(srv.url, "/v1/predict", payloads, 50, args.clients, "warm-up")
            run_load(srv.url, "/v1/explain?method=gradcam", payloads, 20, args.clients, "warm-up explain")
            # one client alone: the server's own time per request, without queueing behind the others
            s_lat, s_err, _, _ = run_load(srv.url, "/v1/predict", payloads, 100, 1, "predict, 1 client")
            x_lat, x_err, _, _ = run_load(srv.url, "/v1/explain?method=gradcam", payloads, 50, 1, "explain, 1 client")
            rss0 = rss_mb(srv.proc.pid)
            cpu0, ccpu0 = cpu_seconds(srv.proc.pid), client_cpu_seconds()
            p_lat, p_err, p_wall, p_health = run_load(srv.url, "/v1/predict", payloads, args.predict, args.clients, "predict")
            cpu1, ccpu1 = cpu_seconds(srv.proc.pid), client_cpu_seconds()
            rss1 = rss_mb(srv.proc.pid)
            e_lat, e_err, e_wall, e_health = run_load(srv.url, "/v1/explain?method=gradcam", payloads, args.explain,
                                                      args.clients, "explain")
            cpu2, ccpu2 = cpu_seconds(srv.proc.pid), client_cpu_seconds()
            rss2 = rss_mb(srv.proc.pid)
            load_after = os.getloadavg()[0]
        finally:
            srv.stop()
    lines = [
        f"Model: {model['name']} `{model['version']}`; {args.clients} concurrent clients (threads of one process, "
        f"one keep-alive httpx connection each, multipart bodies encoded once) on the same 2-core machine as the "
        f"server; server: {args.workers or 1} model thread(s) batching concurrent requests, {args.threads or 1} torch "
        f"thread(s); uploads cycle through 100 Kaggle Testing JPEGs and 100 figshare PNGs. Machine load average "
        f"(1 min) {load_before:.2f} before and {load_after:.2f} after the run.",
        "",
        "| endpoint | requests | errors | p50 ms | p95 ms | target p95 | throughput req/s | server CPU ms/req | "
        "client CPU ms/req | /health p95 ms during load |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| /v1/predict | {args.predict} | {len(p_err)} | {pct(p_lat, 50):.0f} | {pct(p_lat, 95):.0f} | < 100 | "
        f"{args.predict / p_wall:.1f} | {1000 * (cpu1 - cpu0) / args.predict:.1f} | "
        f"{1000 * (ccpu1 - ccpu0) / args.predict:.1f} | {pct(p_health, 95):.0f} |",
        f"| /v1/explain (Grad-CAM) | {args.explain} | {len(e_err)} | {pct(e_lat, 50):.0f} | {pct(e_lat, 95):.0f} | < 300 | "
        f"{args.explain / e_wall:.1f} | {1000 * (cpu2 - cpu1) / args.explain:.1f} | "
        f"{1000 * (ccpu2 - ccpu1) / args.explain:.1f} | {pct(e_health, 95):.0f} |",
        "",
        f"One client alone (no queueing): /v1/predict p50 {pct(s_lat, 50):.0f} ms, p95 {pct(s_lat, 95):.0f} ms "
        f"(100 requests, {len(s_err)} errors); /v1/explain p50 {pct(x_lat, 50):.0f} ms, p95 {pct(x_lat, 95):.0f} ms "
        f"(50 requests, {len(x_err)} errors).",
        "",
        f"Server RSS: {rss0:.0f} MB after warm-up, {rss1:.0f} MB after the {args.predict} predictions "
        f"({rss1 - rss0:+.0f} MB), {rss2:.0f} MB after the {args.explain} explanations ({rss2 - rss1:+.0f} MB).",
    ]
    if p_err or e_err or s_err or x_err:
        lines.append(f"First errors: {(p_err + e_err + s_err + x_err)[:3]}")
    return lines


def bench_checks() -> list[str]:
    from PIL import Image

    from tumorlens.anatomy.regions import segment_regions
    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.serve.attention import tumor_candidates
    from tumorlens.serve.decode import decode_upload
    from tumorlens.inputcheck.rules import check_rules as check_input
    from tumorlens.serve.settings import ServeSettings

    settings = ServeSettings()
    flagged: dict[str, list[str]] = {"kaggle": [], "figshare": []}
    counts = {}
    for name, files in (("kaggle", sorted(KAGGLE.glob("*/*/*.jpg"))), ("figshare", sorted((FIGSHARE / "images").glob("*.png")))):
        counts[name] = len(files)
        for f in tqdm(files, desc=f"input check {name}", unit="img"):
            decoded = decode_upload(f.read_bytes(), settings)
            check = check_input(decoded.images[0], decoded.colour_fraction, decoded.meta)
            if not check.ok:
                flagged[name].append(f"{f.relative_to(SHARED)} ({', '.join(x.code for x in check.findings)})")
    recipe = PreprocessRecipe(size=160)
    recall, precision, found = [], [], 0
    figs = sorted((FIGSHARE / "images").glob("*.png"))
    for f in tqdm(figs, desc="tumor candidates", unit="img"):
        img = np.asarray(Image.open(f), dtype=np.float32)
        mask = np.asarray(Image.open(FIGSHARE / "masks" / f.name)) > 0
        d, m = recipe.display(img), recipe.mask(mask, img)
        cand = tumor_candidates(d, segment_regions(d).brain)
        recall.append((cand & m).sum() / max(m.sum(), 1))
        if cand.any():
            found += 1
            precision.append((cand & m).sum() / cand.sum())
    n_flag = sum(len(v) for v in flagged.values())
    lines = [
        "Input check on real MRI (should flag none): "
        f"{len(flagged['kaggle'])} of {counts['kaggle']} Kaggle and {len(flagged['figshare'])} of {counts['figshare']} "
        f"figshare slices flagged ({100 * n_flag / sum(counts.values()):.2f} %)"
        + (": " + "; ".join(flagged["kaggle"] + flagged["figshare"]) if 0 < n_flag <= 10 else "."),
        "",
        f"Tumor-candidate rule vs the expert masks, all {len(figs)} figshare slices at 160 px: candidates found on "
        f"{100 * found / len(figs):.1f} % of slices; share of tumor pixels covered: median {np.median(recall):.2f}, "
        f"mean {np.mean(recall):.2f}; share of candidate pixels inside the tumor: median {np.median(precision):.2f}, "
        f"mean {np.mean(precision):.2f}. A weak localiser, which is why the page and the API call them candidates.",
    ]
    return lines


def rss_watch(pid: int, every: float = 0.05):
    """Start sampling a process's RSS; returns (samples list, stop function)."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def run():
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_mb(pid)))
            stop.wait(every)

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def done():
        stop.set()
        th.join()
        return samples

    return samples, done


def load_conditions() -> str:
    la = os.getloadavg()
    return (f"machine load average {la[0]:.1f} (1 min) / {la[1]:.1f} (5 min) on 2 cores shared with other "
            "sessions' trainings and tests: latencies are noisy")


def bench_isolation(args) -> list[str]:
    payloads = load_payloads(100)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(args.model, Path(tmp), args.threads, args.workers)
        try:
            run_load(srv.url, "/v1/predict", payloads, 40, args.clients, "warm-up")
            conditions0 = load_conditions()
            base, base_err, _, _ = run_load(srv.url, "/v1/predict", payloads, 400, args.clients, "predict alone")
            name, data = payloads[0]
            body, ctype = multipart(name, data)
            out = {}

            def scorecam():
                t0 = time.perf_counter()
                r = httpx.post(srv.url + "/v1/explain?method=scorecam", content=body,
                               headers={"content-type": ctype}, timeout=900)
                out.update(status=r.status_code, seconds=time.perf_counter() - t0,
                           code=None if r.status_code == 200 else r.json()["error"]["code"])

            th = threading.Thread(target=scorecam)
            th.start()
            time.sleep(1.0)
            during: list[float] = []
            errors: list[str] = []
            while th.is_alive():  # batches of predictions for as long as Score-CAM runs
                lat, err, _, _ = run_load(srv.url, "/v1/predict", payloads, 40, args.clients, "predict during Score-CAM")
                if th.is_alive():
                    during += lat
                    errors += err
            th.join()
            conditions1 = load_conditions()
        finally:
            srv.stop()
    return [
        f"Default model, server as `tumorlens serve` (1 model thread, 1 torch thread), {args.clients} clients "
        "uploading Kaggle and figshare slices; one `POST /v1/explain?method=scorecam` started 1 s into the second "
        f"phase. Before: {conditions0}; after: {conditions1}.",
        "",
        "| phase | predictions | errors | p50 ms | p95 ms | target p95 |",
        "|---|---|---|---|---|---|",
        f"| without Score-CAM | {len(base)} | {len(base_err)} | {pct(base, 50):.0f} | {pct(base, 95):.0f} | |",
        f"| while Score-CAM runs | {len(during)} | {len(errors)} | {pct(during, 50):.0f} | {pct(during, 95):.0f} | < 100 |",
        "",
        f"The Score-CAM request: HTTP {out.get('status')} ({out.get('code') or 'explained'}) after "
        f"{out.get('seconds', float('nan')):.1f} s (its lane runs at the lowest CPU priority; budget "
        "`--slow-budget`, default 120 s).",
    ]


def png_bomb() -> bytes:
    import cv2

    a = np.zeros((4096, 4096, 4), np.uint16)
    a[..., 3] = 65535
    a[::64, :, 0] = 40000
    return cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def nifti_bomb() -> bytes:
    import gzip

    import nibabel as nib

    return gzip.compress(nib.Nifti1Image(np.zeros((512, 512, 200), np.float32), np.eye(4)).to_bytes(), 9)


def bench_bombs(args) -> list[str]:
    lines = [f"Eight concurrent uploads of each bomb to a fresh `tumorlens serve` (default limits: decode budget "
             f"768 MB); {load_conditions()}.", "",
             "| bomb | file size | statuses | RSS before MB | peak MB | rise MB | after MB | target rise |",
             "|---|---|---|---|---|---|---|---|"]
    for label, data, name in (("PNG 4096 x 4096 RGBA 16-bit", png_bomb(), "b.png"),
                              ("NIfTI 512 x 512 x 200 float32, gzip", nifti_bomb(), "b.nii.gz")):
        with tempfile.TemporaryDirectory() as tmp:
            srv = Server(args.model, Path(tmp), args.threads, args.workers)
            try:
                run_load(srv.url, "/v1/predict", load_payloads(20), 20, 2, "warm-up")
                before = rss_mb(srv.proc.pid)
                samples, done = rss_watch(srv.proc.pid)
                statuses: list[int | str] = []
                body, ctype = multipart(name, data)

                def send():
                    try:
                        r = httpx.post(srv.url + "/v1/predict", content=body, headers={"content-type": ctype}, timeout=900)
                        statuses.append(r.status_code)
                    except httpx.HTTPError as exc:
                        statuses.append(type(exc).__name__)

                threads = [threading.Thread(target=send) for _ in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(1)
                peak = max(m for _, m in done())
                after = rss_mb(srv.proc.pid)
            finally:
                srv.stop()
        counts = ", ".join(f"{k} x{statuses.count(k)}" for k in sorted(set(statuses), key=str))
        lines.append(f"| {label} | {len(data) / 1024:.0f} KB | {counts} | {before:.0f} | {peak:.0f} | "
                     f"{peak - before:+.0f} | {after:.0f} | < +1024 |")
    return lines


def bad_payloads() -> list[tuple[str, bytes]]:
    good = (KAGGLE / "Testing" / "glioma").glob("*.jpg").__next__().read_bytes()
    return [("x.png", b""), ("x.png", b"GIF89a" + b"\0" * 100), ("x.jpg", good[: len(good) // 2]),
            ("x.png", b"\x89PNG\r\n\x1a\n" + b"\x07" * 300), ("x.txt", b"hello world\n" * 20)]


def bench_soak(args) -> list[str]:
    good = load_payloads(100)
    bad = bad_payloads()
    mix = [("/v1/predict", multipart(*p), 200) for p in good[:60]] + \
          [("/v1/explain?method=gradcam", multipart(*p), 200) for p in good[60:]] + \
          [("/v1/predict", multipart(*p), 400) for p in bad] * 4
    random.Random(0).shuffle(mix)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(args.model, Path(tmp), args.threads, args.workers)
        try:
            run_load(srv.url, "/v1/predict", good, 40, 2, "warm-up")
            conditions0 = load_conditions()
            samples, done = rss_watch(srv.proc.pid, every=5.0)
            stop_at = time.perf_counter() + args.soak_seconds
            counts = {"good": 0, "bad": 0, "explain": 0}
            lat: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            bar = tqdm(total=int(args.soak_seconds), desc="soak", unit="s")

            def client(k: int):
                i = k
                with httpx.Client(base_url=srv.url, timeout=120) as c:
                    while time.perf_counter() < stop_at:
                        path, (body, ctype), expect = mix[i % len(mix)]
                        i += 8
                        t0 = time.perf_counter()
                        try:
                            r = c.post(path, content=body, headers={"content-type": ctype})
                            ok = r.status_code == 200 if expect == 200 else 400 <= r.status_code < 500
                            if not ok:
                                with lock:
                                    errors.append(f"{path} {r.status_code} {r.text[:100]}")
                        except httpx.HTTPError as exc:
                            with lock:
                                errors.append(f"{path} {exc!r}")
                        with lock:
                            lat.append(time.perf_counter() - t0)
                            counts["explain" if "explain" in path else "good" if expect == 200 else "bad"] += 1

            threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(1)
                bar.n = min(int(args.soak_seconds), bar.n + 1)
                bar.refresh()
            bar.close()
            rss = [m for _, m in done()]
            alive = srv.proc.poll() is None
            conditions1 = load_conditions()
        finally:
            srv.stop()
    total = sum(counts.values())
    third = max(1, len(rss) // 3)
    return [
        f"8 clients for {args.soak_seconds:.0f} s against `tumorlens serve` (default settings): good uploads "
        f"(Kaggle and figshare slices, 200 expected), bad ones (empty, GIF, truncated JPEG, damaged PNG, text: 4xx "
        f"expected) and Grad-CAM explanations. Before: {conditions0}; after: {conditions1}.",
        "",
        f"Requests: {total} ({counts['good']} predictions, {counts['bad']} bad uploads, {counts['explain']} "
        f"explanations), {total / args.soak_seconds:.1f} req/s; errors: {len(errors)} (target 0); latency over all "
        f"p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms; server alive at the end: {alive}.",
        "",
        f"Server RSS every 5 s: first {rss[0]:.0f} MB, mean of the first third {np.mean(rss[:third]):.0f} MB, of the "
        f"last third {np.mean(rss[-third:]):.0f} MB, max {max(rss):.0f} MB, last {rss[-1]:.0f} MB.",
    ] + ([f"First errors: {errors[:3]}"] if errors else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled default model)")
    ap.add_argument("--predict", type=int, default=2000)
    ap.add_argument("--explain", type=int, default=400)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="server torch threads (default: the CLI's)")
    ap.add_argument("--workers", type=int, default=None, help="server model threads (default: the CLI's)")
    ap.add_argument("--only", default="load,checks,isolation,bombs,soak",
                    help="comma-separated parts to run: load, checks, isolation, bombs, soak")
    ap.add_argument("--soak-seconds", type=float, default=120.0)
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    if not KAGGLE.is_dir() or not FIGSHARE.is_dir():
        raise SystemExit(f"needs the real data in {SHARED}")
    parts = {"load": bench_load, "checks": lambda a: bench_checks(), "isolation": bench_isolation,
             "bombs": bench_bombs, "soak": bench_soak}
    command = " ".join([".venv/bin/python benchmarks/bench_service.py"] + sys.argv[1:])
    for part in [p.strip() for p in args.only.split(",") if p.strip()]:
        lines = parts[part](args)
        print(f"### {part}\n\n" + "\n".join(lines) + "\n")
        if not args.no_write:
            from results import write_section  # benchmarks/results.py: replaces only this part's section

            write_section(f"bench_service.py {part}",
                          f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
