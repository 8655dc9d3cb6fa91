"""Summarise training runs (`tumorlens train` + `tumorlens evaluate --out RUN/testing`) into the
`## default model` section of RESULTS.md: Testing metrics with and without leaked twins, ECE,
training time and recipe, for each run given.

usage: .venv/bin/python benchmarks/experiments/summarize_runs.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/results.py
from results import write_section  # noqa: E402
from tumorlens.models import load_model
from tumorlens.training.augment import augment_preset


def main(runs: list[Path]) -> None:
    lines = [
        "Targets (issue 3): Testing accuracy and macro-F1 >= 0.99; leakage-free macro-F1 >= 0.985; ECE <= 0.02.",
        "Each run: `tumorlens train --data ../shared/data/brain-tumor-mri --split Training --model efficientnet_lite0 "
        "--pretrained imagenet --size S --epochs E --patience 3 --batch-size 32 --lr 1e-3 --seed 0 --out RUN` "
        "plus the options in the recipe column (`--clip-low/--clip-high`, `--augment`, `--val-fraction`, "
        "`--no-class-weights`, `--label-smoothing`), then "
        "`tumorlens evaluate --model RUN/model.pt --data ../shared/data/brain-tumor-mri --out RUN/testing`; "
        f"table by `.venv/bin/python benchmarks/experiments/summarize_runs.py {' '.join(str(r) for r in runs)}`.",
        "",
        "| run | recipe | size | epochs | train min | val macro-F1 | Testing acc | Testing macro-F1 | ECE | leakage-free acc | leakage-free macro-F1 | leakage-free ECE |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        model = load_model(run / "model.pt")
        m = json.loads((run / "testing" / "metrics.json").read_text())
        a, lf = m["all"], m.get("leakage_free", m["all"])
        p = model.provenance
        lines.append(
            f"| {run.name} | {_recipe(model)} | {model.recipe.size} | {p['epochs_run']} | {p['train_seconds'] / 60:.1f} | "
            f"{model.metrics['validation']['macro_f1']:.4f} | {a['accuracy']:.4f} | {a['macro_f1']:.4f} | {a['ece']:.4f} | "
            f"{lf['accuracy']:.4f} | {lf['macro_f1']:.4f} | {lf['ece']:.4f} |"
        )
    lines.append("")
    lines.append(f"Testing slices with a near twin in Training: {m.get('near_twin_in_training', 0)} of {a['n']}. "
                 "Training times were measured while other jobs shared the 2 cores.")
    write_section("default model", "\n".join(lines))
    print("\n".join(lines))


def _recipe(model) -> str:
    cfg = model.provenance["config"]
    return (f"clip {model.recipe.clip_low:g}-{model.recipe.clip_high:g} %, "
            f"augment {augment_preset(cfg.get('augment', True))}, class weights {'on' if cfg['class_weights'] else 'off'}, "
            f"label smoothing {cfg['label_smoothing']:g}, val {cfg['val_fraction']:.0%}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
