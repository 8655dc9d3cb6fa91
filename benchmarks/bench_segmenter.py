"""Benchmarks of the tumor segmenter (issue 17); figures go to benchmarks/RESULTS.md.

  resolution : the Dice ceiling of each model size: expert masks brought to SIZE and back
               (area down, linear up, threshold 0.5), on the 188 non-held-out figshare patients
  cv         : patient-level CV table from train-segmenter --fold runs (their validation_metrics.json)
  sweep      : threshold x min-area on a fold's validation slices (Dice) and the tumor-free slices
               that run never trained on (false-positive rate) -- the choice of the decision rule
  heldout    : the 45 held-out patients (Dice, by class; Dice drop under tumorlens.shifts' gamma 0.6 / 1.6) and the Kaggle
               Testing notumor false-positive rate, for one segmenter. Run once, at the end.
  misses     : where a fold model fails on its validation fold: Dice and share of misses (Dice < 0.1) by tumor
               area, the probability the model gives inside a missed tumor, and Dice with the largest component only
  steps      : seconds per training step, smp Unet (timm Lite0 encoder) vs MONAI FlexibleUNet
  speed      : inference slices/s, 224 px input, batch 32, preprocessing included
  agreement  : predicted masks on Kaggle Testing vs the expert masks of the same figshare slices (pHash twins)
  bundle     : a fold run's segmenter.pt -> src/tumorlens/assets/segmenter.pt with the chosen rule and CV figures

Examples (2 shared CPU cores):
  python benchmarks/bench_segmenter.py resolution
  python benchmarks/bench_segmenter.py cv RUN_FOLD0 RUN_FOLD1 ...
  python benchmarks/bench_segmenter.py sweep RUN_FOLD0
  python benchmarks/bench_segmenter.py heldout --model src/tumorlens/assets/segmenter.pt
  python benchmarks/bench_segmenter.py speed --model src/tumorlens/assets/segmenter.pt
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIGSHARE = ROOT / "shared" / "data" / "figshare-brain-tumor"
KAGGLE = ROOT / "shared" / "data" / "brain-tumor-mri"
HELDOUT = ROOT / "shared" / "splits" / "figshare_heldout_patients.csv"


def _figshare(heldout: bool):
    from tumorlens.data.sources import open_dataset
    from tumorlens.training.segmentation import read_patient_list

    ds = open_dataset(FIGSHARE, progress=False)
    ids = read_patient_list(HELDOUT)
    return ds.subset([i for i, s in enumerate(ds.samples) if (s.patient_id in ids) == heldout])


def cmd_resolution(args) -> None:
    from tumorlens.segment.metrics import dice_iou

    ds = _figshare(heldout=False)
    print(f"| size px | Dice ceiling (mean) | 5th percentile |  ({len(ds)} slices, {len({s.patient_id for s in ds.samples})} patients)")
    print("|---:|---:|---:|")
    for size in args.sizes:
        d = []
        for s in ds.samples:
            m = s.mask.astype(np.float32)
            small = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
            back = cv2.resize(small, m.shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5
            d.append(dice_iou(back, s.mask)[0])
        print(f"| {size} | {np.mean(d):.4f} | {np.percentile(d, 5):.4f} |")


def cmd_cv(args) -> None:
    rows = []
    for run in args.runs:
        m = json.loads((Path(run) / "validation_metrics.json").read_text())
        prov = _provenance(run)
        rows.append((m["fold"], m["dice_mean"], m["iou_mean"], m.get("patient_dice_mean"), m["by_class"], prov.get("train_seconds")))
    print("| fold | slices | Dice | IoU | patient Dice | glioma | meningioma | pituitary | train min |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run, (fold, d, j, pd_, bc, secs) in zip(args.runs, rows):
        n = json.loads((Path(run) / "validation_metrics.json").read_text())["n_slices"]
        cls = " | ".join(f"{bc.get(c, {}).get('dice_mean', float('nan')):.4f}" for c in ("glioma", "meningioma", "pituitary"))
        print(f"| {fold} | {n} | {d:.4f} | {j:.4f} | {pd_:.4f} | {cls} | {secs / 60:.0f} |")
    print(f"mean Dice over {len(rows)} folds: {np.mean([r[1] for r in rows]):.4f}")


def _provenance(run) -> dict:
    from tumorlens.segment.model import read_segmenter

    return read_segmenter(Path(run) / "segmenter.pt")["provenance"]


def cmd_sweep(args) -> None:
    """Probability maps once, then every threshold x min-area rule on them."""
    from tumorlens.segment.model import drop_small_components, load_segmenter
    from tumorlens.segment.metrics import dice_iou
    from tumorlens.data.sources import open_dataset
    from tumorlens.data.splits import patient_kfold

    seg = load_segmenter(Path(args.run) / "segmenter.pt")
    cfg = seg.provenance["config"]
    ds = _figshare(heldout=False)
    _, val_idx = patient_kfold(ds, k=cfg["folds"], seed=cfg["cv_seed"])[cfg["fold"]]
    val = ds.subset(val_idx)
    unused = seg.provenance["negatives_unused"][: args.max_negatives]
    negs = open_dataset(cfg["negatives"], allow_unlabeled=True, progress=False)
    negs = negs.subset([i for i, s in enumerate(negs.samples) if s.path in set(unused)])
    print(f"fold {cfg['fold']}: {len(val)} validation slices; {len(negs)} tumor-free slices unseen in training")
    print("| flip TTA | threshold | min area | validation Dice | tumor-free FP rate |")
    print("|---|---:|---:|---:|---:|")
    for tta in (False, True):
        seg.tta_flip = tta
        p_val = _probs(seg, [s.image for s in val.samples])
        p_neg = _probs(seg, [s.image for s in negs.samples])
        for t in args.thresholds:
            for a in args.min_areas:
                d = np.mean([dice_iou(drop_small_components(p >= t, a), s.mask)[0] for p, s in zip(p_val, val.samples)])
                fp = np.mean([drop_small_components(p >= t, a).any() for p in p_neg])
                print(f"| {'yes' if tta else 'no'} | {t} | {a} | {d:.4f} | {fp:.4f} |", flush=True)


def cmd_misses(args) -> None:
    """At the model's own decision rule (or --threshold/--min-area/--tta): is a missed tumor a
    near miss (probability just under the threshold) or not seen at all, how large are the missed
    tumors, and would keeping only the largest connected component help."""
    import pandas as pd

    from tumorlens.data.splits import patient_kfold
    from tumorlens.segment.metrics import dice_iou
    from tumorlens.segment.model import drop_small_components, load_segmenter

    seg = load_segmenter(args.model)
    if args.tta is not None:
        seg.tta_flip = args.tta
    t = seg.threshold if args.threshold is None else args.threshold
    a = seg.min_area if args.min_area is None else args.min_area
    cfg = seg.provenance["config"]
    ds = _figshare(heldout=False)
    _, val_idx = patient_kfold(ds, k=cfg["folds"], seed=cfg["cv_seed"])[cfg["fold"]]
    val = ds.subset(val_idx)
    rows = []
    for p, s in zip(_probs(seg, [s.image for s in val.samples]), val.samples):
        m = s.mask.astype(bool)
        pred = drop_small_components(p >= t, a)
        n, lab, st, _ = cv2.connectedComponentsWithStats(pred.astype(np.uint8), connectivity=8)
        lcc = lab == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA])) if n > 1 else pred
        rows.append({"cls": s.label, "dice": dice_iou(pred, m)[0], "dice_lcc": dice_iou(lcc, m)[0], "area": m.mean(),
                     "p_max_in_tumor": float(p[m].max()), "nothing": not pred.any()})
    df = pd.DataFrame(rows)
    df["area bin"] = pd.cut(df.area, [0, 0.005, 0.01, 0.02, 0.04, 1])
    print(f"fold {cfg['fold']}, {len(df)} slices, rule: TTA {seg.tta_flip}, threshold {t}, min area {a}: Dice {df.dice.mean():.4f}, "
          f"largest component only {df.dice_lcc.mean():.4f}")
    print("| tumor area (share of slice) | slices | Dice | Dice < 0.1 |")
    print("|---|---:|---:|---:|")
    for b, g in df.groupby("area bin", observed=True):
        print(f"| {b} | {len(g)} | {g.dice.mean():.4f} | {(g.dice < 0.1).mean():.3f} |")
    bad = df[df.dice < 0.1]
    q = bad.p_max_in_tumor.quantile([0.25, 0.5, 0.75]).round(3).tolist()
    print(f"Dice < 0.1: {len(bad)} of {len(df)} ({len(bad) / len(df):.1%}); nothing predicted on {int(bad.nothing.sum())}; "
          f"by class {bad.cls.value_counts().to_dict()}; their tumors' median area {bad.area.median():.4f} of the slice "
          f"({bad.area.median() * seg.recipe.size ** 2:.0f} px at {seg.recipe.size} px); highest probability inside the tumor: "
          f"quartiles {q}, > 0.2 on {int((bad.p_max_in_tumor > 0.2).sum())}")


def _probs(seg, images, batch=32):
    out = []
    for i in range(0, len(images), batch):
        out += seg.predict_proba(images[i : i + batch], batch)
    return out


def _predict_shifted(seg, samples, shift):
    """Masks at each slice's own size, the shift (robustness's module, TorchIO) applied to the
    display images at model size and re-normalised as if the file had arrived so."""
    import torch

    from tumorlens.shifts import TRANSFORM_BATCH, acquired_images, renormalize01

    preds = []
    for b, i in enumerate(range(0, len(samples), TRANSFORM_BATCH)):
        chunk = samples[i : i + TRANSFORM_BATCH]
        disp = acquired_images(seg.recipe, [s.image for s in chunk])
        if shift is not None:
            disp = renormalize01(seg.recipe, shift(disp, b))
        probs = seg.probabilities(torch.from_numpy(seg.recipe.normalize(disp)[:, None]))
        preds += [seg.decide(seg.to_image_geometry(p, s.image)) for p, s in zip(probs, chunk)]
    return preds


def cmd_heldout(args) -> None:
    from tumorlens.segment.model import load_segmenter
    from tumorlens.shifts import shift_by_name
    from tumorlens.segment.metrics import false_positive_rate, slice_rows, summarize
    from tumorlens.data.sources import open_dataset

    seg = load_segmenter(args.model)
    ds = _figshare(heldout=True)
    result = {"model": str(args.model), "n_slices": len(ds), "n_patients": len({s.patient_id for s in ds.samples})}
    for gamma in (1.0, 0.6, 1.6):
        preds = _predict_shifted(seg, ds.samples, None if gamma == 1.0 else shift_by_name(f"gamma {gamma}"))
        df = slice_rows([s.name for s in ds.samples], preds, [s.mask for s in ds.samples],
                        [s.label for s in ds.samples], [s.patient_id for s in ds.samples])
        summ = summarize(df)
        summ.pop("by_patient")
        result[f"gamma_{gamma}"] = summ
        print(f"held-out, gamma {gamma}: Dice {summ['dice_mean']:.4f}  IoU {summ['iou_mean']:.4f}  patient Dice {summ['patient_dice_mean']:.4f}  "
              + "  ".join(f"{c} {v['dice_mean']:.4f}" for c, v in summ["by_class"].items()))
    for g in (0.6, 1.6):
        result[f"dice_drop_gamma_{g}"] = round(result["gamma_1.0"]["dice_mean"] - result[f"gamma_{g}"]["dice_mean"], 4)
    notumor = open_dataset(KAGGLE / "Testing" / "notumor", allow_unlabeled=True, progress=False)
    preds = []
    for i in range(0, len(notumor), 32):
        preds += seg.predict([s.image for s in notumor.samples[i : i + 32]])
    result["kaggle_testing_notumor"] = false_positive_rate(preds)
    result["kaggle_testing_notumor"]["min_area"] = seg.min_area
    print(f"Dice drop: gamma 0.6 {result['dice_drop_gamma_0.6']:+.4f}, gamma 1.6 {result['dice_drop_gamma_1.6']:+.4f}")
    print(f"Kaggle Testing notumor: {result['kaggle_testing_notumor']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def cmd_speed(args) -> None:
    import torch

    from tumorlens.segment.model import load_segmenter

    if args.threads:
        torch.set_num_threads(args.threads)
    seg = load_segmenter(args.model)
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (224, 224)).astype(np.float32) for _ in range(32)]
    seg.predict(images)  # warm-up
    times, cpu = [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        seg.predict(images, batch_size=32)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    med, med_cpu = float(np.median(times)), float(np.median(cpu))
    # CPU seconds as well: on a shared machine the wall clock measures the other runs too.
    print(f"{32 / med:.1f} slices/s wall, {32 / med_cpu:.1f} slices per CPU-second (224 px input, model {seg.recipe.size} px, "
          f"flip TTA {seg.tta_flip}, batch 32, {torch.get_num_threads()} threads, median of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f})")


def cmd_steps(args) -> None:
    """One training step (forward, backward, AdamW; batch 16, channels-last, one thread) of the two
    candidate libraries' U-Nets: smp Unet with timm tf_efficientnet_lite0 (the light decoder the
    segmenter uses) and MONAI FlexibleUNet with its efficientnet-b0 (no ImageNet weights here)."""
    import torch
    from monai.networks.nets import FlexibleUNet

    from tumorlens.segment.model import SegmenterArch, build_segmenter

    torch.set_num_threads(1)
    nets = {"smp Unet, timm tf_efficientnet_lite0": lambda: build_segmenter(SegmenterArch()),
            "MONAI FlexibleUNet, efficientnet-b0": lambda: FlexibleUNet(1, 1, backbone="efficientnet-b0", pretrained=False, spatial_dims=2)}
    loss = torch.nn.BCEWithLogitsLoss()
    print("| network | params (M) | px | s / step |")
    print("|---|---:|---:|---:|")
    for name, make in nets.items():
        for px in args.sizes:
            net = make().to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(net.parameters())
            x = torch.randn(16, 1, px, px).contiguous(memory_format=torch.channels_last)
            y = (torch.rand(16, 1, px, px) > 0.9).float()
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                opt.zero_grad()
                loss(net(x), y).backward()
                opt.step()
                times.append(time.perf_counter() - t)
            n = sum(p.numel() for p in net.parameters()) / 1e6
            print(f"| {name} | {n:.2f} | {px} | {float(np.median(times[1:])):.3f} |", flush=True)


def cmd_agreement(args) -> None:
    """Predicted masks on Kaggle Testing tumor slices vs the expert masks of the same figshare slices
    (perceptual-hash twins, segment/audit.py); `--limit` takes a seeded subset."""
    from tumorlens.data.sources import open_dataset
    from tumorlens.segment.audit import figshare_agreement
    from tumorlens.segment.model import load_segmenter
    from tumorlens.training.segmentation import read_patient_list

    seg = load_segmenter(args.model)
    kag = open_dataset(KAGGLE / "Testing", progress=False)
    idx = [i for i, s in enumerate(kag.samples) if s.label != "notumor"]
    if args.limit:
        idx = sorted(np.random.default_rng(0).choice(idx, size=min(args.limit, len(idx)), replace=False).tolist())
    kag = kag.subset(idx)
    preds = []
    for i in range(0, len(kag), 32):
        preds += seg.predict([s.image for s in kag.samples[i : i + 32]])
    fig = open_dataset(FIGSHARE, progress=False)
    out = figshare_agreement(kag, preds, fig, never_trained=read_patient_list(HELDOUT))
    print(f"{len(kag)} Kaggle Testing tumor slices: {out}")


def cmd_bundle(args) -> None:
    """The chosen fold model as the package's segmenter: its decision rule and its CV figures."""
    from tumorlens.segment.model import rewrite_segmenter

    folds = [json.loads((Path(r) / "validation_metrics.json").read_text()) for r in args.cv_runs]
    cv = {"folds": len(folds), "of": folds[0]["folds"], "dice_mean": round(float(np.mean([f["dice_mean"] for f in folds])), 4),
          "per_fold": {str(f["fold"]): f["dice_mean"] for f in folds},
          "note": args.note or "patient-level folds of the 188 non-held-out figshare patients, each at its run's own decision rule"}
    metrics = {"cv": cv}
    if args.heldout_json:
        metrics["heldout"] = json.loads(Path(args.heldout_json).read_text())["gamma_1.0"]
    out = rewrite_segmenter(Path(args.run) / "segmenter.pt", args.out, threshold=args.threshold, min_area=args.min_area,
                            tta_flip=args.tta, metrics=metrics)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); CV {cv}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("resolution")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 192, 224])
    p = sub.add_parser("cv")
    p.add_argument("runs", nargs="+")
    p = sub.add_parser("sweep")
    p.add_argument("run")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    p.add_argument("--min-areas", type=float, nargs="+", default=[0.0, 0.001, 0.002, 0.004])
    p.add_argument("--max-negatives", type=int, default=600)
    p = sub.add_parser("heldout")
    p.add_argument("--model", required=True)
    p.add_argument("--json")
    p = sub.add_parser("speed")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("misses")
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float)
    p.add_argument("--min-area", type=float)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None)
    p = sub.add_parser("steps")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    p.add_argument("--steps", type=int, default=4)
    p = sub.add_parser("agreement")
    p.add_argument("--model", required=True)
    p.add_argument("--limit", type=int)
    p = sub.add_parser("bundle")
    p.add_argument("run")
    p.add_argument("--cv-runs", nargs="+", required=True)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src" / "tumorlens" / "assets" / "segmenter.pt"))
    p.add_argument("--threshold", type=float)
    p.add_argument("--min-area", type=float)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--heldout-json")
    p.add_argument("--note")
    args = ap.parse_args()
    {"misses": cmd_misses, "agreement": cmd_agreement, "steps": cmd_steps, "bundle": cmd_bundle, "resolution": cmd_resolution, "cv": cmd_cv, "sweep": cmd_sweep, "heldout": cmd_heldout, "speed": cmd_speed}[args.cmd](args)


if __name__ == "__main__":
    main()
