"""Choosing the default model's training recipe (issue 18) on VALIDATION data, then its table.

    python benchmarks/robust_model.py validate --model runs/X/model.pt [--model runs/Y/model.pt ...]
        clean accuracy and macro-F1 of each checkpoint on its own validation split (rebuilt from the
        checkpoint's provenance and checked against its digest), and accuracy under every shift of
        tumorlens.shifts (the robustness check's fixed set) -> benchmarks/out/robust_model/NAME.json
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
    from tumorlens.data.splits import patient_group_split, stratified_split
    from tumorlens.training.trainer import _paths_digest

    prov = model.provenance
    cfg = prov["config"]
    samples = open_dataset(prov["data"], class_map=cfg.get("class_map") or None)
    if cfg.get("split"):
        samples = samples.by_split(cfg["split"])
    seed = cfg["seed"] if cfg.get("split_seed") is None else cfg["split_seed"]
    split = patient_group_split if samples.has_patients() else stratified_split
    _, val_idx = split(samples, val_fraction=cfg["val_fraction"], seed=seed)
    val = samples.subset(val_idx)
    if _paths_digest(val) != prov["val_paths_sha"]:
        raise SystemExit(f"the rebuilt validation split differs from the one {cfg['out']} was trained with")
    return val


def validate(model_path: Path) -> dict:
    from tumorlens.audit.forward import probabilities01
    from tumorlens.evaluation.metrics import classification_metrics
    from tumorlens.models import load_model
    from tumorlens.shifts import acquired_images, evaluate_under_shifts

    model = load_model(model_path)
    val = validation_samples(model)
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
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--model", type=Path, action="append", required=True)
    t = sub.add_parser("table")
    t.add_argument("--run", action="append", required=True, help="NAME=DIR")
    args = ap.parse_args(argv)
    if args.cmd == "validate":
        for m in args.model:
            result = validate(m)
            out = m.parent / "validation_shifts.json"
            out.write_text(json.dumps(result, indent=2))
            print(json.dumps({k: result[k] for k in ("model", "accuracy", "macro_f1", "worst_shift")}),
                  {k: round(s["accuracy"], 4) for k, s in result["shifts"].items()})
    else:
        print(table([(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in args.run]))


if __name__ == "__main__":
    sys.exit(main())
