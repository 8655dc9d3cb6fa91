"""Choosing the default model's training recipe (issue 18) on VALIDATION data, then its table.

    python benchmarks/robust_model.py validate --model runs/X/model.pt [--model runs/Y/model.pt ...]
        clean accuracy and macro-F1 of each checkpoint on its own validation split (rebuilt from the
        checkpoint's provenance and checked against its digest), and accuracy under every shift of
        tumorlens.shifts (the robustness check's fixed set) -> benchmarks/out/robust_model/NAME.json
    python benchmarks/robust_model.py invariance [--data DIR] [--every 50]
        how far the display image moves under the gamma shifts, min-max vs head_rank recipe, on every
        50th Training slice (a property of the preprocessing; no model, nothing selected)
    python benchmarks/robust_model.py undo-shift --model runs/X/model.pt --out runs/X_shifted
        a run trained with --tumor-removal-p before the trainer undid its label shift, corrected as
        the trainer now does (class priors of the data, not of relabelled training)
    python benchmarks/robust_model.py table --run NAME=DIR [...]
        one RESULTS row per candidate from DIR/model.pt, DIR/validation_shifts.json, DIR/testing
        (tumorlens evaluate), DIR/audit (tumorlens audit, Kaggle Testing), DIR/audit_figshare.

The shifts act where a scanner acts (tumorlens.shifts.acquired_images: before the recipe's intensity
step), as the audit's robustness check applies them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "robust_model"


def validation_samples(model):
    """The checkpoint's validation split, rebuilt as its training run drew it."""
    from tumorlens.data.sources import open_dataset
    from tumorlens.models.recorded_split import recorded_validation

    prov = model.provenance
    cfg = prov["config"]
    # a relative data folder resolves from the working folder of that run: another checkout (git
    # worktree) beside this one names the same files under another prefix
    data = Path(cfg["data"])
    roots = [str(other / data) for other in ROOT.parent.iterdir()] if not data.is_absolute() else []
    for folder in dict.fromkeys([cfg["data"], prov["data"]]):
        found = recorded_validation(prov, open_dataset(folder, class_map=cfg.get("class_map") or None), roots)
        if found is not None and found[1]:
            return found[0]
    raise SystemExit(f"the rebuilt validation split differs from the one {cfg['out']} was trained with")


def validate(model_path: Path, limit: int | None = None) -> dict:
    from tumorlens.audit.forward import probabilities01
    from tumorlens.evaluation.metrics import classification_metrics
    from tumorlens.models import load_model
    from tumorlens.shifts import acquired_images, evaluate_under_shifts

    model = load_model(model_path)
    val = validation_samples(model)
    if limit is not None and limit < len(val):  # a seeded subset, the same for every model of one split
        val = val.subset(np.sort(np.random.default_rng(0).choice(len(val), limit, replace=False)))
    recipe = model.recipe
    truth = np.array([model.classes.index(s.label) for s in val.samples])
    display = np.stack([recipe.display(s.image) for s in val.samples])
    acquired = acquired_images(recipe, [s.image for s in val.samples])
    probs = probabilities01(model, display)
    clean = classification_metrics(truth, probs, model.classes)
    ev = evaluate_under_shifts(model, acquired, truth, clean_probs=probs)
    shifts = {m["name"]: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "changed": m["changed"]}
              for m in ev.metrics()}
    result = {
        "model": str(model_path), "n_val": len(val), "recipe": recipe.to_dict(),
        "config": {k: model.provenance["config"].get(k) for k in
                   ("pretrained", "epochs", "lr", "augment", "intensity", "outside_brain", "outside_p")},
        "accuracy": clean["accuracy"], "macro_f1": clean["macro_f1"], "shifts": shifts,
        "worst_shift": min(shifts.items(), key=lambda kv: kv[1]["accuracy"])[0],
        "train_minutes": model.provenance.get("train_seconds", float("nan")) / 60,
    }
    return result


def invariance(data: Path, every: int) -> dict:
    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.data.sources import open_dataset
    from tumorlens.shifts import renormalize01, shift_by_name

    samples = open_dataset(str(data)).by_split("Training")
    raw = [s.image for s in samples.samples[::every]]
    out = {"n": len(raw), "every": every}
    for intensity in ("minmax", "head_rank"):
        recipe = PreprocessRecipe(size=224, clip_low=0, clip_high=100, intensity=intensity)
        display = np.stack([recipe.display(im) for im in raw])
        acquired = np.stack([recipe.acquired(im) for im in raw])
        for name in ("gamma 0.6", "gamma 1.6"):
            moved = np.abs(renormalize01(recipe, shift_by_name(name)(acquired)) - display).mean(axis=(1, 2))
            out[f"{intensity} {name}"] = {"mean_abs_change": float(moved.mean()), "p95": float(np.quantile(moved, 0.95))}
    return out


def finish(run: Path, base: Path, overrides: dict, train_seconds: float) -> Path:
    """model.pt from a run's lightning/best.ckpt when the run died after fitting (the OOM killer of
    the shared machine took one at its post-fit step): the trainer's own post-fit steps, i.e. the
    best epoch's weights, temperature fitted on the validation split, validation metrics. The
    config is the `base` checkpoint's with `overrides` (the run's command line); the training-image
    hashes are the base's (the same Training folder and split)."""
    import torch

    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.evaluation.calibration import fit_temperature
    from tumorlens.evaluation.metrics import classification_metrics
    from tumorlens.models import load_model
    from tumorlens.models.checkpoint import save_checkpoint
    from tumorlens.models.registry import build_model

    old = load_model(base)
    prov = json.loads(json.dumps(old.provenance))
    cfg = {**prov["config"], **overrides}
    recipe = PreprocessRecipe(size=cfg["size"], crop_to_head=cfg["crop_to_head"], clip_low=cfg["clip_low"],
                              clip_high=cfg["clip_high"], intensity=cfg.get("intensity", "minmax"))
    val = validation_samples(old)  # the same split (seed, fraction, data) as the base run
    net = build_model(cfg["model"], len(old.classes))
    state = torch.load(run / "lightning" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    y = np.array([old.classes.index(smp.label) for smp in val.samples])
    x = torch.from_numpy(recipe.batch([smp.image for smp in val.samples]))
    with torch.inference_mode():
        logits = torch.cat([net(x[i:i + 64]) for i in range(0, len(x), 64)]).numpy()
    temperature = fit_temperature(logits, y)
    metrics = classification_metrics(y, torch.softmax(torch.from_numpy(logits) / temperature, 1).numpy(), old.classes)
    prov.update(config=cfg, epochs_run=1, train_seconds=train_seconds,
                finished_by="benchmarks/robust_model.py finish (the run was OOM-killed after fitting)")
    return save_checkpoint(run / "model.pt", net, cfg["model"], old.classes, recipe, temperature=temperature,
                           provenance=prov, metrics={"validation": metrics})


def undo_shift(model_path: Path, out: Path) -> Path:
    """A copy of a checkpoint trained with --tumor-removal-p before the trainer corrected the label
    shift, with the trainer's correction folded in and the temperature refitted on validation. Such
    runs stored only how many tumor slices had a mask in all, so each tumor class is taken to have
    that share."""
    import torch

    from tumorlens.audit.forward import to_input
    from tumorlens.data.sources import open_dataset
    from tumorlens.evaluation.calibration import fit_temperature
    from tumorlens.evaluation.metrics import classification_metrics
    from tumorlens.models import load_model
    from tumorlens.models.checkpoint import save_checkpoint
    from tumorlens.models.softmax import temperature_softmax
    from tumorlens.training.tumor_removal import tumor_free_class, undo_removal_label_shift

    model = load_model(model_path)
    prov = json.loads(json.dumps(model.provenance))
    cfg, masks = prov["config"], prov.get("tumor_removal_masks")
    if not masks:
        raise SystemExit(f"{model_path} was not trained with --tumor-removal-p: there is no label shift to undo")
    if prov.get("tumor_removal_logit_shift"):
        raise SystemExit(f"{model_path} has its label shift undone already: {prov['tumor_removal_logit_shift']}")
    val = validation_samples(model)
    everything = open_dataset(prov["data"], class_map=cfg.get("class_map") or None)
    if cfg.get("split"):
        everything = everything.by_split(cfg["split"])
    classes = model.classes
    counts = np.array([sum(smp.label == c for smp in everything.samples) - sum(smp.label == c for smp in val.samples)
                       for c in classes], float)
    removable = counts * masks["with_tumor"] / (masks["predicted"] + masks["expert"])
    removable[tumor_free_class(classes)] = 0
    net = model.net.to(memory_format=torch.contiguous_format)
    shift = undo_removal_label_shift(net, model.arch, classes, counts, removable, cfg["tumor_removal_p"])
    y = np.array([classes.index(smp.label) for smp in val.samples])
    display = np.stack([model.recipe.display(smp.image) for smp in val.samples])
    with torch.inference_mode():
        logits = torch.cat([net(to_input(model, display[i:i + 64])) for i in range(0, len(display), 64)]).numpy()
    temperature = fit_temperature(logits, y)
    metrics = classification_metrics(y, temperature_softmax(logits, temperature), classes)
    prov.update(tumor_removal_logit_shift=shift, finished_by="benchmarks/robust_model.py undo-shift")
    print(f"logit shift {shift}: validation accuracy {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f}")
    return save_checkpoint(out / "model.pt", net, model.arch, classes, model.recipe, temperature=temperature,
                           provenance=prov, metrics={"validation": metrics})


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(runs: list[tuple[str, Path]]) -> str:
    """Markdown: one row per candidate (validation, then Testing and audit figures)."""
    shift_names = None
    lines = []
    for name, d in runs:
        v = _load(d / "validation_shifts.json")
        if v is None:
            continue
        shift_names = shift_names or list(v["shifts"])
        t = _load(d / "testing" / "summary.json") or {}
        a = _load(d / "audit" / "summary.json") or {}
        fg = _load(d / "audit_figshare" / "summary.json") or {}
        lines.append((name, v, t, a, fg))
    head = ["recipe", "train min", "val acc", "val macro-F1", "val worst shift"] + [f"val {s}" for s in shift_names or []]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v, *_ in lines:
        cells = [name, _f(v["train_minutes"], 0), _f(v["accuracy"]), _f(v["macro_f1"]),
                 f"{v['worst_shift']} {_f(v['shifts'][v['worst_shift']]['accuracy'])}"]
        cells += [_f(v["shifts"][s]["accuracy"]) for s in shift_names]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + audit_table(lines)


def audit_table(lines) -> str:
    """Markdown: per candidate its Kaggle Testing audit and its figshare counterfactuals (reported,
    never chosen on): the figures issue 18 asks of every recipe."""
    classes = ("glioma", "meningioma", "pituitary")
    head = (["recipe", "Testing acc", "leakage-free macro-F1", "shift acc min (name)", "brain blanked acc",
             "decision invariance kappa", "correct calls peaking outside brain", "pointing game (predicted masks)"]
            + [f"figshare Delta-Drop {c} (inpaint / mirror)" for c in classes] + ["verdicts failed"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, _v, _t, a, fg in lines:
        if not a:
            continue
        cls = a["classification"]
        shifts = a.get("robustness", {}).get("shifts") or []
        worst = min(shifts, key=lambda r: r["accuracy"]) if shifts else None
        sc, att = a["shortcut"], a["attention"]["all"]
        by = ((fg.get("counterfactuals") or {}).get("by_class") or {})
        failed = [c["name"] for c in a["verdict"]["checks"] if c.get("status") == "fail"]
        cells = [name, _f(cls["all"]["accuracy"], 4), _f((cls.get("leakage_free") or {}).get("macro_f1"), 4),
                 f"{_f(worst['accuracy'])} ({worst['name']})" if worst else "-",
                 _f(sc["accuracy"]["brain_blanked"]), _f(sc["decision_invariance"]["kappa"], 2),
                 _f(att["share_correct_focused_outside_brain"]), _f(att.get("pointing_game"))]
        cells += [f"{_f(by.get(c, {}).get('delta_drop_mean'), 2)} / {_f(by.get(c, {}).get('delta_drop_mirror_mean'), 2)}"
                  for c in classes]
        cells.append(", ".join(failed) or "none")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    import os

    os.chdir(ROOT)  # relative data folders in checkpoints are relative to the repository
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--model", type=Path, action="append", required=True)
    v.add_argument("--limit", type=int, default=None, help="a seeded subset of N validation slices")
    f = sub.add_parser("finish")
    f.add_argument("--run", type=Path, required=True)
    f.add_argument("--base", type=Path, required=True)
    f.add_argument("--set", action="append", default=[], help="config key=JSON value")
    f.add_argument("--train-seconds", type=float, required=True)
    inv = sub.add_parser("invariance")
    inv.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "brain-tumor-mri")
    inv.add_argument("--every", type=int, default=50)
    u = sub.add_parser("undo-shift")
    u.add_argument("--model", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True, help="folder for the corrected model.pt")
    t = sub.add_parser("table")
    t.add_argument("--run", action="append", required=True, help="NAME=DIR")
    args = ap.parse_args(argv)
    if args.cmd == "validate":
        for m in args.model:
            result = validate(m, args.limit)
            out = m.parent / "validation_shifts.json"
            out.write_text(json.dumps(result, indent=2))
            print(json.dumps({k: result[k] for k in ("model", "accuracy", "macro_f1", "worst_shift")}),
                  {k: round(s["accuracy"], 4) for k, s in result["shifts"].items()})
    elif args.cmd == "finish":
        overrides = {kv.split("=", 1)[0]: json.loads(kv.split("=", 1)[1]) for kv in args.set}
        print(finish(args.run, args.base, overrides, args.train_seconds))
    elif args.cmd == "undo-shift":
        print(undo_shift(args.model, args.out))
    elif args.cmd == "invariance":
        print(json.dumps(invariance(args.data, args.every), indent=1))
    else:
        print(table([(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in args.run]))


if __name__ == "__main__":
    sys.exit(main())
