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
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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

KAGGLE_TESTING = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri" / "Testing"
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
    """The bare model passes an explainer is measured against: one forward (inference mode) and
    one forward+backward to the input, on the same batch, same layout and frozen weights that
    explain() uses."""

    def __init__(self, net: torch.nn.Module, x: torch.Tensor):
        self.net, self.x = net, x
        self.wrapper = ChannelsLast(net)

    def forward(self) -> float:
        with explaining(self.net), torch.inference_mode():
            t = time.perf_counter()
            self.wrapper(self.x)
            return time.perf_counter() - t

    def forward_backward(self) -> float:
        with explaining(self.net):
            t = time.perf_counter()
            xi = self.x.clone().requires_grad_(True)
            out = self.wrapper(xi)
            torch.autograd.grad(out[:, 0].sum(), xi)
            return time.perf_counter() - t


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_methods(model: TumorModel, x: torch.Tensor, methods: list[str], repeats: int, scorecam_images: int,
                  batch_size: int) -> list[dict]:
    net = model.net
    to_channels_last(net)
    bare = Bare(net, x[:batch_size])
    layer_channels = {}
    rows = []
    for method in methods:
        spec = method_spec(method)
        n = scorecam_images if method == "scorecam" else len(x)
        xs = x[:n]
        if spec.family == "cam":
            layer = find_layer(net, ARCHITECTURES[model.arch].target_layer)
            if model.arch not in layer_channels:
                store = {}
                h = layer.register_forward_hook(lambda m, i, o: store.update(c=o.shape[1]))
                with torch.inference_mode():
                    net(xs[:1])
                h.remove()
                layer_channels[model.arch] = store["c"]
        passes = passes_per_image(method, {}, x.shape[-2], x.shape[-1], layer_channels.get(model.arch, 0))
        explain(model, xs[:2], method)  # warm-up: imports, CAM object, first-call allocations
        t_method, t_f, t_fb = [], [], []
        for _ in range(repeats):
            # Bare passes measured right beside each run, so both see the same machine load.
            t_f.append(statistics.median(bare.forward() for _ in range(2)) / len(bare.x))
            t_fb.append(statistics.median(bare.forward_backward() for _ in range(2)) / len(bare.x))
            t_method.append(timed(lambda: explain(model, xs, method, batch_size=batch_size)) / n)
        f, fb, m = statistics.median(t_f), statistics.median(t_fb), statistics.median(t_method)
        ideal = passes.forward * f + passes.forward_backward * fb
        rows.append({"method": method, "n": n, "ms": m * 1000, "passes": passes, "ideal_ms": ideal * 1000,
                     "efficiency": ideal / m, "fwd_ms": f * 1000, "fb_ms": fb * 1000})
        print(f"{method:10s} {m * 1000:9.1f} ms/img  ideal {ideal * 1000:9.1f}  efficiency {ideal / m:.2f}  "
              f"(fwd {f * 1000:.1f}, fwd+bwd {fb * 1000:.1f} ms/img)", flush=True)
    return rows


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
        for i in range(len(x)):
            img = x[i, 0].numpy().astype(np.float64)
            seg = slic_segments(img, p["n_segments"], p["compactness"])
            with explaining(model.net):
                explainer.explain_instance(np.repeat(img[..., None], 3, axis=-1), classifier_fn,
                                           labels=(int(targets[i]),), top_labels=None, hide_color=float(img.min()),
                                           num_samples=samples, batch_size=batch_size,
                                           segmentation_fn=lambda _im, s=seg: s, progress_bar=False, random_seed=0)

    def ours():
        explain(model, x, "lime", targets=targets, batch_size=batch_size, samples=samples, n_segments=n_segments)

    ours(), theirs()  # warm-up
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours) / len(x))
        t_theirs.append(timed(theirs) / len(x))
    o, t = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"LIME: ours {o * 1000:.0f} ms/img, lime package {t * 1000:.0f} ms/img, ratio {t / o:.2f}", flush=True)
    return {"ours_ms": o * 1000, "theirs_ms": t * 1000, "ratio": t / o, "n": len(x), "samples": samples}


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
            with explaining(model.net), torch.inference_mode():
                occ_map, _ = occ(img)
            maps.append(occ_map[0, 0, ..., int(targets[i])].numpy())
        theirs_maps[:] = [np.stack(maps)]

    ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours) / len(x))
        t_theirs.append(timed(theirs) / len(x))
    o, t = statistics.median(t_ours), statistics.median(t_theirs)
    # Agreement: our map is (score - occluded score), MONAI's the occluded score: expect r close to -1.
    r = float(np.median([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours_maps[0], theirs_maps[0])]))
    print(f"Occlusion: ours {o * 1000:.0f} ms/img, MONAI {t * 1000:.0f} ms/img, ratio {t / o:.2f}, r={r:.3f}", flush=True)
    return {"ours_ms": o * 1000, "theirs_ms": t * 1000, "ratio": t / o, "n": len(x), "window": win, "stride": stride,
            "r": r}


def passes_text(p) -> str:
    parts = []
    if p.forward:
        parts.append(f"{p.forward:g} fwd")
    if p.forward_backward:
        parts.append(f"{p.forward_backward:g} fwd+bwd")
    return " + ".join(parts)


def report(args, described: str, rows: list[dict], lime_row: dict | None, occ_row: dict | None, seconds: float) -> str:
    cmd = "nohup .venv/bin/python benchmarks/bench_explain.py " + " ".join(sys.argv[1:])
    lines = [
        f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}; {described}; {args.images} Kaggle Testing slices, "
        f"batch {args.batch_size}, 2 torch threads, shared busy 2-core machine; whole script {seconds / 60:.0f} min).",
        "",
        "Efficiency = time of the bare model passes the method needs (forward in inference mode, forward+backward "
        "to the input; same batch, same channels-last layout, measured beside each run) / the method's time. "
        f"Medians of {args.repeats} runs. Default parameters of each method.",
        "",
        "| method | images | ms / image | passes per image | bare passes, ms / image | efficiency |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n']} | {r['ms']:.1f} | {passes_text(r['passes'])} | {r['ideal_ms']:.1f} "
                     f"| **{r['efficiency']:.2f}** |")
    if rows:
        lines += ["", f"Bare passes per image (median over the run): forward "
                      f"{statistics.median(r['fwd_ms'] for r in rows):.1f} ms, forward+backward "
                      f"{statistics.median(r['fb_ms'] for r in rows):.1f} ms."]
    if lime_row or occ_row:
        lines += ["", "Side by side, same images, same model and layout, same sample counts, batch "
                      f"{args.batch_size} (ratio = their time / ours):", "",
                  "| comparison | images | ours ms / image | theirs ms / image | ratio |", "|---|---:|---:|---:|---:|"]
        if lime_row:
            lines.append(f"| LIME ({lime_row['samples']} samples, same SLIC superpixels) vs `lime` LimeImageExplainer "
                         f"| {lime_row['n']} | {lime_row['ours_ms']:.0f} | {lime_row['theirs_ms']:.0f} | "
                         f"**{lime_row['ratio']:.2f}** |")
        if occ_row:
            lines.append(f"| Occlusion (window {occ_row['window']}, stride {occ_row['stride']}, black fill) vs MONAI "
                         f"OcclusionSensitivity | {occ_row['n']} | {occ_row['ours_ms']:.0f} | {occ_row['theirs_ms']:.0f} "
                         f"| **{occ_row['ratio']:.2f}** |")
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
    ap.add_argument("--compare-images", type=int, default=4)
    ap.add_argument("--compare-samples", type=int, default=200)
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()

    model, described = load(args.size)
    images, _ = real_images(args.images)
    x = model.prepare(images)
    methods = list(METHODS) if args.methods == "all" else [method_spec(m).name for m in args.methods.split(",")]
    print(f"{described}; {len(x)} images {tuple(x.shape[-2:])}", flush=True)
    rows = bench_methods(model, x, methods, args.repeats, args.scorecam_images, args.batch_size)
    lime_row = occ_row = None
    if not args.skip_compare:
        xc = x[: args.compare_images]
        lime_row = lime_side_by_side(model, xc, args.compare_samples, 50, args.repeats, args.batch_size)
        occ_row = occlusion_side_by_side(model, xc, args.repeats, args.batch_size)
    text = report(args, described, rows, lime_row, occ_row, time.perf_counter() - start)
    print(text)
    if not args.no_write:
        write_section("bench_explain.py", text)


if __name__ == "__main__":
    main()
