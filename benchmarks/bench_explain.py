"""Explainer speed on real MRI slices: ms per image per method at batch 32, and efficiency =
(time of the bare model passes the method needs, measured in the same run) / (the method's time).
Side by side on the same images and sample counts: our LIME vs the `lime` package's image
explainer, and our Occlusion vs MONAI's OcclusionSensitivity.

Model: the default model (src/tumorlens/assets/default_model.pt) when it ships, else an untrained
EfficientNet-Lite0 at 160 px (same cost per pass). Writes the `bench_explain.py` section of
benchmarks/RESULTS.md.

usage: nohup .venv/bin/python benchmarks/bench_explain.py [--images 32] [--repeats 3] > bench_explain.log &
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tumorlens.runtime import configure_process  # noqa: E402

configure_process()  # as the command line does: OMP_WAIT_POLICY=PASSIVE before torch loads, freed memory kept
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

from tumorlens.data.preprocess import PreprocessRecipe  # noqa: E402
from tumorlens.data.readers.images import read_image  # noqa: E402
from tumorlens.explain import METHODS, explain, passes_per_image  # noqa: E402
from tumorlens.explain.methods import occlusion_geometry, resolve_params, method_spec  # noqa: E402
from tumorlens.explain.model_access import ChannelsLast, explaining, find_layer, to_channels_last  # noqa: E402
from tumorlens.explain.superpixels import slic_segments  # noqa: E402
from tumorlens.models.checkpoint import TumorModel, load_model  # noqa: E402
from tumorlens.models.registry import ARCHITECTURES, build_model  # noqa: E402

from results import KAGGLE_TESTING  # noqa: E402
CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def load(default_size: int) -> tuple[TumorModel, str]:
    path = Path(__file__).resolve().parents[1] / "src" / "tumorlens" / "assets" / "default_model.pt"
    if path.is_file():
        m = load_model(path)
        return m, f"default model `{m.version}` ({m.arch}, {m.recipe.size} px)"
    torch.manual_seed(0)
    net = build_model("efficientnet_lite0", 4).eval()
    return (TumorModel(net=net, arch="efficientnet_lite0", classes=CLASSES, recipe=PreprocessRecipe(size=default_size)),
            f"untrained efficientnet_lite0 at {default_size} px (the default model had not shipped; same cost per pass)")


def real_images(n: int) -> tuple[list[np.ndarray], list[str]]:
    """n Kaggle Testing slices, round-robin over the classes (first files in name order)."""
    per_class = {c: sorted((KAGGLE_TESTING / c).glob("*.jpg")) for c in CLASSES}
    out, names = [], []
    k = 0
    while len(out) < n:
        c = CLASSES[k % len(CLASSES)]
        files = per_class[c]
        if k // len(CLASSES) < len(files):
            f = files[k // len(CLASSES)]
            out.append(read_image(f)[0])
            names.append(f"{c}/{f.name}")
        k += 1
    return out, names


class Bare:
    """The bare model passes an explainer is measured against: forwards (inference mode) and
    forward+backward passes to the input, on batches of the same images, in the same channels-last
    layout and with the frozen weights that explain() uses."""

    def __init__(self, net: torch.nn.Module, x: torch.Tensor):
        self.net, self.x = net, x
        self.wrapper = ChannelsLast(net)

    def run(self, forward_images: float, forward_backward_images: float) -> np.ndarray:
        """(wall, CPU) seconds for this many image-forwards and image-forward+backwards, in full batches."""
        b = len(self.x)
        total = np.zeros(2)
        with explaining(self.net):
            if forward_images:
                batches = max(1, int(np.ceil(forward_images / b)))
                with torch.inference_mode():
                    t = clock()
                    for _ in range(batches):
                        self.wrapper(self.x)
                    total += (clock() - t) * forward_images / (batches * b)
            if forward_backward_images:
                batches = max(1, int(np.ceil(forward_backward_images / b)))
                t = clock()
                for _ in range(batches):
                    xi = self.x.clone().requires_grad_(True)
                    out = self.wrapper(xi)
                    torch.autograd.grad(out[:, 0].sum(), xi)
                total += (clock() - t) * forward_backward_images / (batches * b)
        return total


def clock() -> np.ndarray:
    # Wall time is what a user waits; CPU time of this process is far less disturbed by the other
    # jobs on this shared machine, so both are kept.
    return np.array([time.perf_counter(), time.process_time()])


def timed(fn) -> np.ndarray:
    t = clock()
    fn()
    return clock() - t


def layer_channels(model: TumorModel, x: torch.Tensor) -> int:
    store = {}
    layer = find_layer(model.net, ARCHITECTURES[model.arch].target_layer)
    h = layer.register_forward_hook(lambda m, i, o: store.update(c=o.shape[1]))
    with torch.inference_mode():
        model.net(x[:1])
    h.remove()
    return int(store["c"])


PERTURBATION_METHODS = ("occlusion", "lime", "kernelshap")


def images_for(method: str, args) -> int:
    if method == "scorecam":
        return args.scorecam_images
    if method in PERTURBATION_METHODS:
        return args.perturbation_images
    return args.images


def bench_methods(model: TumorModel, x: torch.Tensor, methods: list[str], args, loads: list[float]) -> list[dict]:
    """Per repeat: the method on its images, and the bare model running the same number of passes
    (same duration, so both meet the same machine load); efficiency = median of the per-repeat ratios.
    A fast method is run `loops` times per repeat (at least --min-seconds), so that a timer tick or a
    scheduler hiccup does not decide its ratio; the bare passes are multiplied alike."""
    net = model.net
    to_channels_last(net)
    batch_size = args.batch_size
    bare = Bare(net, x[:batch_size])
    channels = layer_channels(model, x)
    rows = []
    for method in methods:
        n = min(len(x), images_for(method, args))
        xs = x[:n]
        passes = passes_per_image(method, {}, x.shape[-2], x.shape[-1], channels)
        # Warm-up (imports, CAM object, first-call allocations), timed to size the loops.
        warm = xs[: min(n, 2 if method != "scorecam" else 1)]
        t_warm = timed(lambda: explain(model, warm, method, batch_size=batch_size))[0] / len(warm)
        loops = max(1, int(np.ceil(args.min_seconds / max(t_warm * n, 1e-6))))
        t_method, t_bare, ratios, cpu_ratios = [], [], [], []
        for r in range(args.repeats):
            def run_method():
                def go():
                    for _ in range(loops):
                        explain(model, xs, method, batch_size=batch_size)
                t_method.append(timed(go) / (n * loops))

            def run_bare():
                t_bare.append(bare.run(passes.forward * n * loops, passes.forward_backward * n * loops) / (n * loops))

            # Alternate the order, so a slow drift in machine load favours neither.
            (run_method, run_bare)[r % 2]()
            (run_bare, run_method)[r % 2]()
            ratios.append(t_bare[-1][0] / t_method[-1][0])
            cpu_ratios.append(t_bare[-1][1] / t_method[-1][1])
        loads.append(os.getloadavg()[0])
        m = statistics.median(t[0] for t in t_method)
        ideal = statistics.median(t[0] for t in t_bare)
        eff, cpu_eff = statistics.median(ratios), statistics.median(cpu_ratios)
        rows.append({"method": method, "n": n, "loops": loops, "ms": m * 1000, "passes": passes,
                     "ideal_ms": ideal * 1000, "efficiency": eff, "cpu_efficiency": cpu_eff, "ratios": ratios})
        print(f"{method:10s} {n:3d} img x{loops:<3d} {m * 1000:9.1f} ms/img  bare passes {ideal * 1000:9.1f} ms/img  "
              f"efficiency {eff:.2f} (per repeat: {', '.join(f'{q:.2f}' for q in ratios)}), by CPU time {cpu_eff:.2f}"
              f"  load {loads[-1]:.2f}", flush=True)
    return rows


def alternate(ours, theirs, repeats: int, n: int) -> tuple[float, float]:
    """Median seconds per image of each, over `repeats` runs whose order alternates."""
    t_ours, t_theirs = [], []
    for r in range(repeats):
        pair = ((ours, t_ours), (theirs, t_theirs))
        for fn, store in pair[:: 1 if r % 2 == 0 else -1]:
            store.append(timed(fn)[0] / n)
    return statistics.median(t_ours), statistics.median(t_theirs)


def lime_side_by_side(model: TumorModel, x: torch.Tensor, samples: int, n_segments: int, repeats: int,
                      batch_size: int) -> dict:
    """Same images, same superpixels (SLIC, same settings), same sample count and batch size."""
    from lime import lime_image

    wrapper = ChannelsLast(model.net)
    p = resolve_params(method_spec("lime"), {"samples": samples, "n_segments": n_segments})
    with torch.inference_mode():
        targets = wrapper(x).argmax(1).numpy()

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch[..., 0], dtype=np.float32))[:, None]
        with torch.inference_mode():
            return torch.softmax(wrapper(t), dim=1).numpy()

    def theirs():
        explainer = lime_image.LimeImageExplainer(random_state=0)
        # lime draws a tqdm bar over its samples (no switch in lime 0.2.0.1): silenced, as ours is.
        quiet = mock.patch.object(lime_image, "tqdm", lambda it, *a, **k: it)
        for i in range(len(x)):
            img = x[i, 0].numpy().astype(np.float64)
            seg = slic_segments(img, p["n_segments"], p["compactness"])
            with explaining(model.net), quiet:
                explainer.explain_instance(np.repeat(img[..., None], 3, axis=-1), classifier_fn,
                                           labels=(int(targets[i]),), top_labels=None, hide_color=float(img.min()),
                                           num_samples=samples, batch_size=batch_size,
                                           segmentation_fn=lambda _im, s=seg: s, random_seed=0)

    def ours():
        explain(model, x, "lime", targets=targets, batch_size=batch_size, samples=samples, n_segments=n_segments)

    ours(), theirs()  # warm-up
    o, t = alternate(ours, theirs, repeats, len(x))
    print(f"LIME: ours {o * 1000:.0f} ms/img, lime package {t * 1000:.0f} ms/img, ratio {t / o:.2f}", flush=True)
    return {"ours_ms": o * 1000, "theirs_ms": t * 1000, "ratio": t / o, "n": len(x), "samples": samples,
            "version": importlib.metadata.version("lime")}


def occlusion_side_by_side(model: TumorModel, x: torch.Tensor, repeats: int, batch_size: int) -> dict:
    """Same images, window, stride (MONAI overlap = 1 - stride/window), black fill, batch size."""
    from monai.visualize import OcclusionSensitivity

    wrapper = ChannelsLast(model.net)
    h, w = x.shape[-2:]
    win, stride = occlusion_geometry(h, w, None, None)
    with torch.inference_mode():
        targets = wrapper(x).argmax(1).numpy()
    ours_maps, theirs_maps = [], []

    def ours():
        ours_maps[:] = [explain(model, x, "occlusion", targets=targets, batch_size=batch_size).raw]

    def theirs():
        maps = []
        for i in range(len(x)):
            img = x[i : i + 1]
            occ = OcclusionSensitivity(nn_module=wrapper, mask_size=win, n_batch=batch_size, verbose=False,
                                       mode=float(img.min()), overlap=1 - stride / win, activate=False)
            with explaining(model.net), torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # MONAI's own indexing deprecation notice
                occ_map, _ = occ(img)
            maps.append(occ_map[0, int(targets[i])].numpy())  # (batch, class, H, W) in MONAI 1.6
        theirs_maps[:] = [np.stack(maps)]

    ours(), theirs()  # warm-up
    o, t = alternate(ours, theirs, repeats, len(x))
    # Agreement: our map is (score - occluded score), MONAI's the occluded score: expect r close to -1.
    r = float(np.median([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours_maps[0], theirs_maps[0])]))
    print(f"Occlusion: ours {o * 1000:.0f} ms/img, MONAI {t * 1000:.0f} ms/img, ratio {t / o:.2f}, r={r:.3f}", flush=True)
    return {"ours_ms": o * 1000, "theirs_ms": t * 1000, "ratio": t / o, "n": len(x), "window": win, "stride": stride,
            "version": importlib.metadata.version("monai"),
            "r": r}


def passes_text(p) -> str:
    parts = []
    if p.forward:
        parts.append(f"{p.forward:g} fwd")
    if p.forward_backward:
        parts.append(f"{p.forward_backward:g} fwd+bwd")
    return " + ".join(parts)


def report(args, described: str, rows: list[dict], lime_row: dict | None, occ_row: dict | None, seconds: float,
           loads: list[float]) -> str:
    cmd = ".venv/bin/python benchmarks/bench_explain.py " + " ".join(sys.argv[1:])
    lines = [
        f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {described}; Kaggle Testing "
        f"slices (first files of each class, round-robin), batch {args.batch_size}, 2 torch threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; 2-core machine shared with other jobs, "
        f"1-min load average {min(loads):.2f}-{max(loads):.2f} while it ran; whole script {seconds / 60:.1f} min).",
        "",
        "Efficiency = time of the bare model running the passes the method needs (forwards in inference mode, "
        "forward+backward passes to the input; full batches of 32 of the same images, same channels-last layout "
        "and frozen weights), timed right beside each run of the method, divided by the method's time; median of "
        f"the per-run ratios over {args.repeats} runs (method and bare passes alternate in order). A fast method "
        f"runs several times per run (x loops, at least {args.min_seconds:g} s). Default parameters of each method. "
        f"Images per method: {args.images}, except Score-CAM ({args.scorecam_images}: one forward per channel of "
        f"the layer) and occlusion, LIME, KernelSHAP ({args.perturbation_images}; each pass still carries 32 "
        "perturbed images).",
        "",
        "Reading the CAM rows: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM and the random baseline need one forward "
        "and one backward pass, and are charged a full forward+backward to the input; explain() roots the graph "
        "at the target layer, so their backward runs through the classifier head only and their efficiency is "
        "above 1 (they cost about one forward). EigenCAM and Score-CAM need forwards only.",
        "",
        "| method | images x loops | ms / image | passes per image | bare passes, ms / image | efficiency "
        "| per run | efficiency by CPU time |",
        "|---|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n']} x {r['loops']} | {r['ms']:.1f} | {passes_text(r['passes'])} "
                     f"| {r['ideal_ms']:.1f} | **{r['efficiency']:.2f}** | "
                     f"{', '.join(f'{q:.2f}' for q in r['ratios'])} | {r['cpu_efficiency']:.2f} |")
    low = [r for r in rows if r["efficiency"] < 0.8]
    lines += ["", ("Every method reaches the 0.8 target." if not low else
                   "Below the 0.8 target: " + ", ".join(f"{r['method']} ({r['efficiency']:.2f})" for r in low) + ".")]
    if lime_row or occ_row:
        lines += ["", "Side by side, same images, same model and channels-last layout, same sample counts, batch "
                      f"{args.batch_size}; runs alternate ours/theirs; ratio = their time / ours (above 1: ours is "
                      "faster):", "",
                  "| comparison | images | ours ms / image | theirs ms / image | ratio |", "|---|---:|---:|---:|---:|"]
        if lime_row:
            lines.append(f"| LIME ({lime_row['samples']} samples, same SLIC superpixels) vs `lime` "
                         f"{lime_row['version']} LimeImageExplainer | {lime_row['n']} | {lime_row['ours_ms']:.0f} "
                         f"| {lime_row['theirs_ms']:.0f} | **{lime_row['ratio']:.2f}** |")
        if occ_row:
            lines.append(f"| Occlusion (window {occ_row['window']}, stride {occ_row['stride']}, black fill) vs MONAI "
                         f"{occ_row['version']} OcclusionSensitivity | {occ_row['n']} | {occ_row['ours_ms']:.0f} "
                         f"| {occ_row['theirs_ms']:.0f} | **{occ_row['ratio']:.2f}** |")
            lines += ["", f"Occlusion maps agree: median per-image correlation between our map (score drop) and "
                          f"MONAI's (occluded score) r = {occ_row['r']:.3f} (-1 = identical up to sign and scale)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=160, help="input size when the default model has not shipped")
    ap.add_argument("--methods", default="all", help="comma-separated, or 'all'")
    ap.add_argument("--scorecam-images", type=int, default=2,
                    help="Score-CAM costs one forward per channel of the layer (1280 for Lite0): fewer images")
    ap.add_argument("--perturbation-images", type=int, default=8,
                    help="images for occlusion, LIME and KernelSHAP (a few hundred forwards per image)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="least time per timed run of a method")
    ap.add_argument("--compare-images", type=int, default=4)
    ap.add_argument("--compare-samples", type=int, default=200)
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    loads = [os.getloadavg()[0]]

    model, described = load(args.size)
    images, _ = real_images(args.images)
    x = model.prepare(images)
    methods = list(METHODS) if args.methods == "all" else [method_spec(m).name for m in args.methods.split(",")]
    print(f"{described}; {len(x)} images {tuple(x.shape[-2:])}; load {loads[0]:.2f}", flush=True)
    rows = bench_methods(model, x, methods, args, loads)
    lime_row = occ_row = None
    if not args.skip_compare:
        xc = x[: args.compare_images]
        lime_row = lime_side_by_side(model, xc, args.compare_samples, 50, args.repeats, args.batch_size)
        loads.append(os.getloadavg()[0])
        occ_row = occlusion_side_by_side(model, xc, args.repeats, args.batch_size)
        loads.append(os.getloadavg()[0])
    text = report(args, described, rows, lime_row, occ_row, time.perf_counter() - start, loads)
    print(text)
    if not args.no_write:
        write_section("bench_explain.py", text)


if __name__ == "__main__":
    main()
