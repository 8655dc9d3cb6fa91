"""Which map localises? Candidates measured on a control where the evidence's place is known, then
the chosen one beside today's Grad-CAM on figshare (expert tumor masks) for the shipped model.

Control: the shipped EfficientNet-Lite0 whose last stage (conv_head, bn2) and a new 2-class
classifier are trained at 224 px on phantom heads whose class is decided only by one small Gaussian
blob at a random position in the brain (tumorlens.explain.localisation.blob_control): the network
the audit explains, made to decide by evidence whose place is known. On held-out blob slices, each candidate map explains class "blob": pointing game
(the audit's definition: smoothed peak within 5 px of the blob), energy in the blob, ms per image.

usage: nohup .venv/bin/python benchmarks/bench_localisation.py > /work/notes/logs/bench_localisation.log &
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

from tumorlens.audit.attention import POINTING_TOLERANCE_PX, heatmap_peak  # noqa: E402
from tumorlens.explain import explain, method_spec  # noqa: E402
from tumorlens.explain.localisation import blob_control, stage_strides  # noqa: E402
from tumorlens.models.checkpoint import TumorModel, load_model  # noqa: E402
from tumorlens.models.registry import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "src" / "tumorlens" / "assets" / "default_model.pt"
FIGSHARE = ROOT.parent / "shared" / "data" / "figshare-brain-tumor"
HELDOUT = ROOT.parent / "shared" / "splits" / "figshare_heldout_patients.csv"


def localisation_scores(heat: np.ndarray, masks: np.ndarray, tolerance: float = POINTING_TOLERANCE_PX):
    """Per image: pointing hit (smoothed peak within `tolerance` px of the mask) and energy share."""
    import cv2

    hits, energy = [], []
    for h, m in zip(heat, masks):
        py, px = heatmap_peak(h)
        dist = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, 5)
        hits.append(float(dist[py, px] <= tolerance))
        hm = np.clip(h, 0, None)
        energy.append(float(hm[m].sum() / hm.sum()) if hm.sum() > 0 else 0.0)
    return np.array(hits), np.array(energy)


def control_model(args, cache: Path) -> tuple[TumorModel, dict]:
    """The blob-control Lite0, trained once and cached (training log in the returned dict)."""
    base = load_model(DEFAULT_MODEL)
    net = build_model(base.arch, 2)
    state = {k: v for k, v in base.net.state_dict().items() if not k.startswith("classifier")}
    net.load_state_dict(state, strict=False)
    model = TumorModel(net=net, arch=base.arch, classes=["none", "blob"], recipe=base.recipe)
    if cache.is_file():
        saved = torch.load(cache, weights_only=False)
        net.load_state_dict(saved["state"])
        net.eval()
        return model, saved["log"]
    t0 = time.perf_counter()
    # The backbone stays the shipped model's; its last stage (conv_head, bn2) and a new 2-class
    # classifier learn the blob. Features below the head are computed once (the shared 2-core
    # machine could not afford full fine-tuning at 224 px), and BatchNorm keeps its statistics.
    images, labels, _, _ = blob_control(args.train, size=base.recipe.size, seed=1)
    vimg, vlab, _, _ = blob_control(args.val, size=base.recipe.size, seed=2)
    net.eval()

    def below_head(imgs):
        x = model.prepare(list(imgs))
        out = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(x), 32), desc="control features", unit="batch"):
                xb = x[i:i + 32].contiguous(memory_format=torch.channels_last)
                out.append(net.blocks(net.bn1(net.conv_stem(xb))).clone())
        return torch.cat(out)

    feature_cache = cache.with_name(f"features_{args.train}_{args.val}.pt")
    if feature_cache.is_file():
        feats, vfeats = torch.load(feature_cache)
    else:
        feats, vfeats = below_head(images), below_head(vimg)
        torch.save((feats, vfeats), feature_cache)
    y, vy = torch.from_numpy(labels), torch.from_numpy(vlab)
    for p in net.parameters():
        p.requires_grad_(False)
    head = [net.conv_head, net.bn2, net.classifier]
    params = [p for m in head for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)

    def logits(f):
        return net.forward_head(net.bn2(net.conv_head(f)))

    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    log = {"steps": 0, "val_accuracy": [], "trained": "conv_head, bn2 (affine), classifier"}
    bar = tqdm(total=args.steps, desc="train control", unit="step")
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(feats), (args.batch,), generator=g)
        loss = F.cross_entropy(logits(feats[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.eval_every == 0 or step == args.steps:
            with torch.inference_mode():
                acc = float((logits(vfeats).argmax(1) == vy).float().mean())
            log["val_accuracy"].append((step, acc))
            log["steps"] = step
            print(f"step {step}: validation accuracy {acc:.3f}", flush=True)
            if acc >= args.target_accuracy and step >= args.min_steps:
                break
    bar.close()
    for p in net.parameters():
        p.requires_grad_(True)
    net.eval()
    log["train_s"] = time.perf_counter() - t0
    torch.save({"state": net.state_dict(), "log": log}, cache)
    return model, log


def candidates(net, size: int) -> list[tuple[str, str, dict, str | None]]:
    """(label, method, params, layer) for every candidate map."""
    st = stage_strides(net, size)
    s8, s16, s32 = st.get(8), st.get(16), st.get(32)
    fused = "+".join([s8, s16, s32])
    return [
        (f"gradcam @ {s32} (today)", "gradcam", {}, s32),
        (f"gradcam @ {s16}", "gradcam", {}, s16),
        (f"hirescam @ {s16}", "hirescam", {}, s16),
        (f"layercam @ {s16}", "layercam", {}, s16),
        (f"gradcam @ {s8}", "gradcam", {}, s8),
        (f"layercam @ {s8}", "layercam", {}, s8),
        (f"layercam fused {fused}", "layercam", {}, fused),
        (f"gradcam fused {s16}+{s32}", "gradcam", {}, f"{s16}+{s32}"),
        ("occlusion (window 28, stride 14)", "occlusion", {}, None),
    ]


def run_candidates(model, x, masks, cands, batch_size, perturbation_images):
    rows = []
    for label, method, params, layer in cands:
        n = len(x) if method_spec(method).family == "cam" else min(len(x), perturbation_images)
        t0 = time.perf_counter()
        ex = explain(model, x[:n], method, targets=1, batch_size=batch_size, layer=layer, **params)
        ms = (time.perf_counter() - t0) * 1000 / n
        hits, energy = localisation_scores(ex.heatmaps, masks[:n])
        sides = []
        if layer is not None:
            sides = [int(round(x.shape[-1] / s)) for s, name in stage_strides(model.net, x.shape[-1]).items()
                     if name in layer.split("+")]
        rows.append({"label": label, "method": method, "layer": layer, "params": params, "n": n,
                     "pointing_game": float(hits.mean()), "energy": float(energy.mean()),
                     "energy_median": float(np.median(energy)), "ms": ms,
                     "resolution": " + ".join(f"{k} x {k}" for k in sorted(sides, reverse=True)) if sides else "per window"})
        print(f"{label}: pointing {hits.mean():.3f}, energy {energy.mean():.3f}, {ms:.0f} ms/img (n={n})", flush=True)
    return rows


def figshare_rows(args, methods: list[tuple[str, str, str | None]]):
    """Pointing game and energy in tumor on figshare slices (not the 45 held-out patients) for the
    shipped model, each method on the same seeded subset."""
    import csv

    from tumorlens.data.sources import open_dataset

    model = load_model(DEFAULT_MODEL)
    held = set()
    if HELDOUT.is_file():
        with open(HELDOUT) as f:
            held = {r.get("patient_id") or next(iter(r.values())) for r in csv.DictReader(f)}
    sset = open_dataset(FIGSHARE, progress=True)
    pool = [s for s in sset.samples if str(s.patient_id) not in held and s.mask is not None and np.any(s.mask)]
    rng = np.random.default_rng(0)
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=min(args.figshare, len(pool)), replace=False))]
    out = {}
    for label, method, layer in methods:
        hits_all, energy_all, t_all = [], [], 0.0
        for i in tqdm(range(0, len(chosen), args.batch_size), desc=f"figshare {label}"):
            chunk = chosen[i:i + args.batch_size]
            x = model.prepare([s.image for s in chunk])
            m = np.stack([model.recipe.mask(s.mask, s.image) for s in chunk]).astype(bool)
            t0 = time.perf_counter()
            ex = explain(model, x, method, batch_size=args.batch_size, layer=layer)
            t_all += time.perf_counter() - t0
            h, e = localisation_scores(ex.heatmaps, m)
            hits_all.append(h)
            energy_all.append(e)
        hits, energy = np.concatenate(hits_all), np.concatenate(energy_all)
        out[label] = {"n": len(hits), "pointing_game": float(hits.mean()), "energy": float(energy.mean()),
                      "ms": t_all * 1000 / len(hits)}
        print(f"figshare {label}: {out[label]}", flush=True)
    return out, len(pool), len(held)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--val", type=int, default=128)
    ap.add_argument("--test", type=int, default=96, help="control test slices (half carry a blob)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--min-steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--target-accuracy", type=float, default=0.97)
    ap.add_argument("--batch", type=int, default=64, help="training batch")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32, help="explain batch")
    ap.add_argument("--perturbation-images", type=int, default=4)
    ap.add_argument("--figshare", type=int, default=400, help="figshare slices (0: skip)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tumorlens-bench-localisation/control_lite0.pt"))
    ap.add_argument("--json", type=Path, default=Path("/tmp/tumorlens-bench-localisation/results.json"))
    ap.add_argument("--reuse-control", action="store_true",
                    help="take the control rows from --json of an earlier run (the figshare part only)")
    ap.add_argument("--figshare-only", action="store_true", help="only the figshare part (printed, not written)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    if args.figshare_only:
        from tumorlens.explain import METHODS

        methods = [("gradcam (today)", "gradcam", None)] + ([("localise", "localise", None)] if "localise" in METHODS
                                                            else [])
        fig, pool, held = figshare_rows(args, methods)
        args.json.with_name("figshare.json").write_text(json.dumps({"figshare": fig, "pool": pool, "heldout": held},
                                                                    indent=1))
        print(report_figshare(args, fig, pool, held))
        return
    if args.reuse_control:
        results = {"control": json.loads(args.json.read_text())["control"]}
    else:
        model, log = control_model(args, args.cache)
        size = model.recipe.size
        timg, tlab, tblob, _ = blob_control(args.test, size=size, seed=7)
        tx = model.prepare(list(timg))
        with torch.inference_mode():
            acc = float((model.net(tx).argmax(1).numpy() == tlab).mean())
        keep = tlab == 1
        x, masks = tx[torch.from_numpy(keep)], tblob[keep]
        print(f"control test accuracy {acc:.3f} on {len(tlab)} slices; {len(x)} with a blob", flush=True)
        rows = run_candidates(model, x, masks, candidates(model.net, size), args.batch_size,
                              args.perturbation_images)
        results = {"control": {"accuracy": acc, "train": log, "rows": rows, "n_blob": int(len(x)),
                               "args": {k: str(v) for k, v in vars(args).items()}}}

    if args.figshare and FIGSHARE.is_dir():
        from tumorlens.explain import METHODS

        methods = [("gradcam (today)", "gradcam", None)]
        if "localise" in METHODS:
            methods.append(("localise", "localise", None))
        results["figshare"], results["figshare_pool"], results["heldout_patients"] = figshare_rows(args, methods)
    results["seconds"] = time.perf_counter() - start
    args.json.write_text(json.dumps(results, indent=1))
    text = report(args, results)
    print(text)
    if not args.no_write:
        write_section("bench_localisation.py", text)


def report(args, r) -> str:
    c = r["control"]
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_localisation.py --train {args.train} --steps {args.steps} "
        f"--test {args.test} --figshare {args.figshare}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"whole script {r['seconds'] / 60:.1f} min on the shared 2-core machine, load {os.getloadavg()[0]:.1f}).",
        "",
        f"Control: the shipped EfficientNet-Lite0 at 224 px with its last stage (conv_head, bn2) and a new 2-class "
        f"classifier trained on {args.train} phantom heads (half with one Gaussian blob, sigma 3.5 px, at a random place in the brain; the blob alone "
        f"decides the class) for {c['train']['steps']} steps of {args.batch}; test accuracy {c['accuracy']:.3f} on "
        f"{args.test} new slices. Each map explains class \"blob\" on the {c['n_blob']} test slices with a blob "
        f"(perturbation maps: the first {args.perturbation_images}). Pointing game: the audit's definition "
        f"(peak after a 1 px Gaussian smoothing within {POINTING_TOLERANCE_PX} px of the blob's 2-sigma disk); "
        "energy: share of the map's sum inside that disk (the disk is 0.3 % of the image).",
        "",
        "| map | resolution at 224 px | images | pointing game | energy in blob (mean / median) | ms / image |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in c["rows"]:
        lines.append(f"| {row['label']} | {row['resolution']} | {row['n']} | **{row['pointing_game']:.3f}** | "
                     f"{row['energy']:.3f} / {row['energy_median']:.3f} | {row['ms']:.0f} |")
    if "figshare" in r:
        lines += ["", report_figshare(args, r["figshare"], r["figshare_pool"], r["heldout_patients"])]
    return "\n".join(lines)


def report_figshare(args, fig, pool, held) -> str:
    lines = [f"figshare, shipped model (`src/tumorlens/assets/default_model.pt`), {args.figshare} slices drawn (seed 0) "
             f"from the {pool} with a tumor mask outside the {held} held-out patients; each map explains the predicted "
             "class; same definitions as above with the expert tumor mask:", "",
             "| map | images | pointing game | energy in tumor | ms / image |", "|---|---:|---:|---:|---:|"]
    for label, f in fig.items():
        lines.append(f"| {label} | {f['n']} | **{f['pointing_game']:.3f}** | {f['energy']:.3f} | {f['ms']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
