"""The whole audit of one model on one dataset: run_audit(model, samples, out) -> summary dict.

Order of work (each stage a pure function from its own module; this file only feeds and collects):
1. which images: the Testing split when the dataset has Training and Testing (the rest is
   training data), else everything; optionally a seeded, class-mixed subset (--limit);
2. data checks on the whole dataset (near twins across splits, confounders) -> leakage-free subset;
3. per chunk of images: display image, regions, predictions, Grad-CAM (the per-image method),
   attention analysis, shortcut versions (brain blanked / brain only), tumor counterfactuals;
4. the other explainers, deletion/insertion curves and the randomisation check on a small
   seeded subset (they cost many forward passes per image);
5. verdict, figures, gradcam_analysis.csv, summary.json, report.html.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tumorlens.audit import attention as att
from tumorlens.audit.config import PRIMARY_METHOD, AuditConfig, AuditError
from tumorlens.audit.counterfactuals import (
    background_value,
    counterfactual_table,
    summarise_counterfactuals,
)
from tumorlens.audit.faithfulness import curve_endpoints, deletion_insertion
from tumorlens.audit.forward import probabilities01, to_input
from tumorlens.audit.regions import Regions, segment_regions
from tumorlens.audit.sanity import cascading_randomisation
from tumorlens.audit.shortcuts import blank_brain, brain_only, shortcut_test
from tumorlens.data.sample import SampleSet
from tumorlens.models.checkpoint import TumorModel


# -- explainers -----------------------------------------------------------------------------------
def _explainer(method: str, batch_size: int) -> Callable[[TumorModel, torch.Tensor, np.ndarray], np.ndarray]:
    from tumorlens.explain import explain

    def run(model: TumorModel, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        return np.asarray(explain(model, x, method=method, targets=np.asarray(targets), batch_size=batch_size).heatmaps,
                          np.float32)

    return run


def check_methods(methods) -> None:
    from tumorlens.explain import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise AuditError(f"unknown explainer(s) {unknown}; choose from: {', '.join(METHODS)}")


# -- which images ---------------------------------------------------------------------------------
def select_images(samples: SampleSet, limit: int | None, seed: int) -> tuple[SampleSet, str | None]:
    """The audited images: the non-Training split(s) when the dataset has a Training split."""
    splits = {s.split for s in samples.samples}
    audited_split = None
    if "Training" in splits and len(splits - {"Training"}) > 0:
        others = sorted(x for x in splits - {"Training"} if x)
        audited_split = "Testing" if "Testing" in others else (others[0] if others else None)
        chosen = samples.by_split(audited_split) if audited_split else samples
    else:
        chosen = samples
    if limit is not None and limit < len(chosen):
        # seeded shuffle, then keep the original order: every class appears, the run is repeatable
        idx = np.sort(np.random.default_rng(seed).permutation(len(chosen))[:limit])
        chosen = chosen.subset(idx)
    return chosen, audited_split


def truth_indices(model: TumorModel, samples: SampleSet) -> np.ndarray:
    index = {c: i for i, c in enumerate(model.classes)}
    missing = sum(s.label is None for s in samples.samples)
    if missing:
        raise AuditError(f"{samples.root}: {missing} image(s) have no label; the audit needs labelled images")
    unknown = sorted({s.label for s in samples.samples if s.label not in index})
    if unknown:
        raise AuditError(f"{samples.root}: classes {unknown} are not classes of this model ({', '.join(model.classes)}); "
                         "rename them with --class-map old=new")
    return np.array([index[s.label] for s in samples.samples], np.int64)


# -- stage 2: data checks -------------------------------------------------------------------------
def run_data_checks(samples: SampleSet, audited: SampleSet, progress: bool = True
                    ) -> tuple[dict | None, np.ndarray | None, str]:
    """(report dict, leakage-free mask over audited images or None, note)."""
    from tumorlens.data.checks import check_dataset

    report = check_dataset(samples, progress=progress)
    d = report.to_dict()
    twins = set(d.pop("near_twins_testing"))
    d["n_near_twins_testing"] = len(twins)
    has_training = any(s.split == "Training" for s in samples.samples)
    if not has_training:
        return d, None, ("the dataset has no Training split, so leakage between training and test images cannot be "
                         "checked here; audit the dataset's root folder (with Training/ and Testing/) to check it")
    keep = np.array([_key(s) not in twins and s.path not in twins for s in audited.samples])
    return d, keep, f"{int((~keep).sum())} of {len(keep)} audited images have a near twin in Training (perceptual hash)"


def model_training_twins(model: TumorModel, samples: SampleSet, audited: SampleSet, training_data: str | None,
                         progress: bool = True) -> tuple[np.ndarray | None, dict]:
    """Audited images with a near twin in the data the model was trained on.

    Sources, in order: perceptual hashes stored in the checkpoint (provenance["train_phash"], hex
    strings, if the trainer saved them: no data needed); else the training folder and split the
    provenance names, when it is on this machine and is not the audited dataset itself (whose own
    splits the dataset check already compares). This is what catches, e.g., figshare slices that a
    model trained on the Kaggle set (which contains many of them) has already seen.
    training_data: "auto" (stored hashes, else the named folder), "stored" (stored hashes only:
    fast, used by --demo), "none", or a folder path.
    """
    from tumorlens.data.checks import DEFAULT_HAMMING, hash_samples, nearest_distance

    prov = model.provenance or {}
    info: dict = {"path": None, "split": None, "checked": False, "note": ""}
    if training_data in (None, "none"):
        info["note"] = "not checked (--training-data none)"
        return None, info
    stored = prov.get("train_phash")
    hb = None
    if stored and training_data in ("auto", "stored"):
        hb = np.array([int(h, 16) for h in stored], np.uint64)
        info.update(path=prov.get("data"), split=prov.get("train_split"), source="hashes stored in the checkpoint")
    else:
        if training_data == "stored":
            info["note"] = ("the checkpoint stores no hashes of its training images; give --training-data auto or a "
                            "folder to check them")
            return None, info
        root = prov.get("data") if training_data == "auto" else training_data
        split = prov.get("train_split") if training_data == "auto" else None
        info.update(path=root, split=split, source="training folder")
        if not root:
            info["note"] = "the checkpoint does not name its training data; give --training-data PATH to check it"
            return None, info
        if not Path(root).exists():
            info["note"] = f"the model's training data ({root}) is not on this machine; give --training-data PATH"
            return None, info
        if samples.root and Path(root).resolve() == Path(samples.root).resolve():
            info["note"] = "the audited dataset is the model's training dataset: its Training/Testing check covers this"
            return None, info
        from tumorlens.data.sources import open_dataset

        train = open_dataset(root, progress=progress)
        if split and any(s.split == split for s in train.samples):
            train = train.by_split(split)
        hb, vb = hash_samples(train.samples, progress=progress)
        hb = hb[vb]
    ha, va = hash_samples(audited.samples, progress=progress)
    twin = np.zeros(len(audited), bool)
    if va.any() and len(hb):
        twin[va] = nearest_distance(ha[va], hb) <= DEFAULT_HAMMING
    where = f"{info['path']}{', split ' + info['split'] if info['split'] else ''}"
    info.update(checked=True, n_training_images=len(hb), n_twins=int(twin.sum()), hamming=DEFAULT_HAMMING,
                note=(f"{int(twin.sum())} of {len(audited)} audited images have a near twin in the model's training "
                      f"data ({where}; {len(hb)} images, {info['source']})"))
    return twin, info


def _key(s) -> str:
    idx = s.meta.get("slice_index")
    return f"{s.path}#{idx}" if idx is not None else s.path


# -- stage 3: per-image analysis ------------------------------------------------------------------
@dataclass
class PerImage:
    rows: list[dict] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    pred_blanked: list[np.ndarray] = field(default_factory=list)
    pred_brain_only: list[np.ndarray] = field(default_factory=list)
    cf: list[pd.DataFrame] = field(default_factory=list)
    display: list[np.ndarray] = field(default_factory=list)  # uint8, for figures
    heatmap: list[np.ndarray] = field(default_factory=list)  # uint8
    region_map: list[np.ndarray] = field(default_factory=list)  # uint8 0/1/2
    tumor: list[np.ndarray | None] = field(default_factory=list)
    fills: list[float] = field(default_factory=list)
    seconds_explain: float = 0.0


def _to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def analyse_images(model: TumorModel, samples: SampleSet, truth: np.ndarray, cfg: AuditConfig) -> PerImage:
    recipe = model.recipe
    explain_primary = _explainer(PRIMARY_METHOD, cfg.batch_size)
    out = PerImage()
    chunk = max(cfg.batch_size, 64)
    bar = tqdm(total=len(samples), desc="auditing images", unit="img", disable=not cfg.progress)
    for start in range(0, len(samples), chunk):
        part = samples.samples[start : start + chunk]
        t = truth[start : start + chunk]
        display = np.stack([recipe.display(s.image) for s in part])
        tumors = [recipe.mask(s.mask, s.image) if s.mask is not None else None for s in part]
        regions = [segment_regions(d) for d in display]
        fills = np.array([background_value(d, r.background) for d, r in zip(display, regions)], np.float32)

        probs = probabilities01(model, display, cfg.batch_size)
        pred = probs.argmax(1)
        t0 = time.perf_counter()
        heat = explain_primary(model, to_input(model, display), pred)
        out.seconds_explain += time.perf_counter() - t0

        for j, s in enumerate(part):
            a = att.analyse_attention(heat[j], regions[j], tumors[j], correct=bool(pred[j] == t[j]))
            row = {"path": s.path, "split": s.split, "patient_id": s.patient_id,
                   "truth": model.classes[t[j]], "prediction": model.classes[pred[j]],
                   "correct": bool(pred[j] == t[j]), "confidence": float(probs[j].max()),
                   "p_true": float(probs[j, t[j]])}
            row.update(a.row())
            out.rows.append(row)

        blanked = np.stack([blank_brain(d, r, f) for d, r, f in zip(display, regions, fills)])
        kept = np.stack([brain_only(d, r, f) for d, r, f in zip(display, regions, fills)])
        out.pred_blanked.append(probabilities01(model, blanked, cfg.batch_size).argmax(1))
        out.pred_brain_only.append(probabilities01(model, kept, cfg.batch_size).argmax(1))

        if cfg.counterfactuals:  # images without a tumor get NaN rows (nothing to remove)
            masks = np.stack([m if m is not None else np.zeros(display.shape[1:], bool) for m in tumors])
            out.cf.append(counterfactual_table(model, display, masks, t, probs,
                                               np.stack([r.background for r in regions]), cfg.batch_size))
        out.probs.append(probs)
        out.display.extend(_to_u8(display))
        out.heatmap.extend(_to_u8(heat))
        out.region_map.extend(r.label_map() for r in regions)
        out.tumor.extend(tumors)
        out.fills.extend(fills.tolist())
        bar.update(len(part))
    bar.close()
    return out


# -- stage 4: explainer comparison, faithfulness, sanity --------------------------------------------
def compare_explainers(model: TumorModel, audited: SampleSet, per: PerImage, truth: np.ndarray, idx: np.ndarray,
                       cfg: AuditConfig) -> tuple[list[dict], dict, dict, dict]:
    """Rows of the explainer table, mean deletion/insertion curves, sanity results, example maps."""
    # the exact display images again (per.display keeps 8-bit copies for figures only)
    display = np.stack([model.recipe.display(audited.samples[i].image) for i in idx])
    x = to_input(model, display)
    probs = np.concatenate(per.probs)[idx]
    targets = probs.argmax(1)
    fills = np.array([per.fills[i] for i in idx], np.float32)
    maps_label = {i: per.region_map[i] for i in idx}
    rows, curves, sanity, examples = [], {}, {}, {}
    ends = curve_endpoints(model, display, targets, fills, max(cfg.batch_size, 64))
    bar = tqdm(total=len(cfg.methods) * (len(idx) + min(cfg.sanity_n, len(idx))),
               desc="comparing explainers", unit="img", disable=not cfg.progress)
    for method in cfg.methods:
        fn = _explainer(method, cfg.batch_size)
        t0 = time.perf_counter()
        heat = fn(model, x, targets)
        ms = (time.perf_counter() - t0) * 1000 / max(len(idx), 1)
        examples[method] = heat[: min(4, len(heat))]
        atts = []
        for j, i in enumerate(idx):
            lm = maps_label[i]
            reg = Regions(background=lm == 0, skull=lm == 1, brain=lm == 2, head=lm > 0)
            atts.append(att.analyse_attention(heat[j], reg, per.tumor[i], correct=bool(targets[j] == truth[i])))
        c = deletion_insertion(model, display, heat, targets, fills, batch_size=max(cfg.batch_size, 64),
                               progress=bar.update, endpoints=ends)
        curves[method] = {"fractions": c.fractions.tolist(), "deletion": c.deletion.mean(0).tolist(),
                          "insertion": c.insertion.mean(0).tolist()}
        n_s = min(cfg.sanity_n, len(idx))
        s = cascading_randomisation(model, x[:n_s], targets[:n_s], fn, method, seed=cfg.seed, original=heat[:n_s])
        bar.update(n_s)
        sanity[method] = s.to_dict()
        energy_tumor = [a.energy_tumor for a in atts if a.has_tumor]
        hits = [a.pointing_hit for a in atts if a.has_tumor]
        rows.append({
            "method": method,
            "n": len(idx),
            "energy_tumor": float(np.mean(energy_tumor)) if energy_tumor else None,
            "pointing_game": float(np.mean(hits)) if hits else None,
            "energy_outside_brain": float(np.nanmean([a.energy_outside_brain for a in atts])),
            "focus_outside_brain": float(np.mean([a.focus in att.OUTSIDE_BRAIN for a in atts])),
            "deletion_auc": float(c.deletion_auc.mean()),
            "insertion_auc": float(c.insertion_auc.mean()),
            "sanity_passed": bool(s.passed),
            "sanity_spearman": s.final_spearman,
            "sanity_ssim": s.final_ssim,
            "ms_per_image": float(ms),
        })
    bar.close()
    return rows, curves, sanity, examples


# -- the audit ------------------------------------------------------------------------------------
def run_audit(model: TumorModel, samples: SampleSet, out: str | Path, config: AuditConfig | None = None,
              model_path: str | None = None) -> dict:
    """Audit `model` on `samples`; writes report.html, summary.json, gradcam_analysis.csv (+ figures/)
    into `out` and returns the summary."""
    from tumorlens.audit.report import write_report
    from tumorlens.audit.verdict import make_verdict

    cfg = config or AuditConfig()
    check_methods(cfg.methods)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()

    audited, audited_split = select_images(samples, cfg.limit, cfg.seed)
    if len(audited) == 0:
        raise AuditError(f"{samples.root}: no images to audit")
    truth = truth_indices(model, audited)
    classes = model.classes

    t0 = time.perf_counter()
    checks, keep, checks_note = (None, None, "dataset checks skipped (--no-data-checks)")
    if cfg.data_checks:
        checks, keep, checks_note = run_data_checks(samples, audited, cfg.progress)
    twin_model, model_data = model_training_twins(model, samples, audited, cfg.training_data, cfg.progress)
    leakage = {"near_twins_in_training_split": None if keep is None else int((~keep).sum()),
               "near_twins_in_model_training_data": None if twin_model is None else int(twin_model.sum()),
               "model_training_data": model_data}
    if twin_model is not None:
        keep = ~twin_model if keep is None else keep & ~twin_model
    timing["data_checks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    per = analyse_images(model, audited, truth, cfg)
    timing["per_image"] = time.perf_counter() - t0
    df = pd.DataFrame(per.rows)
    probs = np.concatenate(per.probs)
    pred = probs.argmax(1)
    correct = pred == truth
    if leakage["near_twins_in_training_split"] is not None or twin_model is not None:
        df["near_twin_in_training"] = ~keep  # in the Training split or in the model's own training data

    t0 = time.perf_counter()
    shortcut = shortcut_test(truth, pred, np.concatenate(per.pred_blanked), np.concatenate(per.pred_brain_only), classes)
    df["prediction_brain_blanked"] = [classes[i] for i in np.concatenate(per.pred_blanked)]
    df["prediction_brain_only"] = [classes[i] for i in np.concatenate(per.pred_brain_only)]
    if keep is not None and keep.any():
        shortcut["leakage_free"] = shortcut_test(truth[keep], pred[keep], np.concatenate(per.pred_blanked)[keep],
                                                 np.concatenate(per.pred_brain_only)[keep], classes)

    cf_summary = None
    if per.cf and any(m is not None and m.any() for m in per.tumor):
        cf_all = pd.concat(per.cf, ignore_index=True)
        for col in ("p_true_removed", "p_true_tumor_only", "delta_drop", "delta_focus"):
            df[col] = cf_all[col].to_numpy()
        df["prediction_tumor_removed"] = [classes[i] if i >= 0 else "" for i in cf_all["pred_removed"]]
        df["prediction_tumor_only"] = [classes[i] if i >= 0 else "" for i in cf_all["pred_tumor_only"]]
        cf_summary = summarise_counterfactuals(cf_all, truth, classes, correct)
        if keep is not None and keep.any():
            cf_summary["leakage_free"] = summarise_counterfactuals(cf_all[keep].reset_index(drop=True), truth[keep],
                                                                   classes, correct[keep])["all"]
    timing["shortcuts_counterfactuals_summary"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.permutation(len(audited))[: min(cfg.compare_n, len(audited))])
    table, curves, sanity, examples = compare_explainers(model, audited, per, truth, idx, cfg)
    timing["explainers"] = time.perf_counter() - t0
    primary_ms = per.seconds_explain * 1000 / len(audited)
    for row in table:
        if row["method"] == PRIMARY_METHOD:
            row["ms_per_image_all_images"] = primary_ms

    from tumorlens.evaluation.metrics import classification_metrics

    classification = {"all": classification_metrics(truth, probs, classes)}
    if keep is not None:
        classification["leakage_free"] = classification_metrics(truth[keep], probs[keep], classes) if keep.any() else None
        classification["near_twins_in_training"] = int((~keep).sum())

    attention_summary = summarise_attention(df, keep)
    summary = {
        "tumorlens_version": _version(),
        "model": {"path": model_path, "arch": model.arch, "version": model.version, "classes": classes,
                  "input_size": model.recipe.size, "temperature": model.temperature},
        "data": {"root": samples.root, "kind": samples.kind, "n_total": len(samples), "audited_split": audited_split,
                 "skipped_files": len(samples.skipped), "has_masks": bool(any(m is not None for m in per.tumor))},
        "n_images": len(audited),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "classification": classification,
        "attention": attention_summary,
        "shortcut": shortcut,
        "counterfactuals": cf_summary,
        "explainers": table,
        "faithfulness_curves": curves,
        "sanity": sanity,
        "data_checks": checks,
        "data_checks_note": checks_note,
        "leakage": leakage,
        "terms": {"pointing_tolerance_px": att.POINTING_TOLERANCE_PX, "edge_band_fraction": att.EDGE_BAND_FRACTION},
    }
    summary["verdict"] = make_verdict(summary)

    t0 = time.perf_counter()
    df.to_csv(out / "gradcam_analysis.csv", index=False)
    timing["total_before_report"] = time.perf_counter() - t_all
    summary["timing_seconds"] = {k: round(v, 2) for k, v in timing.items()}
    write_report(summary, df, per, examples, idx, out)
    summary["timing_seconds"]["report"] = round(time.perf_counter() - t0, 2)
    summary["timing_seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    return summary


def by_class(df: pd.DataFrame) -> list[dict]:
    """One row per true class: accuracy, off-target focus, and where masks exist, tumor localisation
    and the counterfactual deltas (the classes can behave very differently)."""
    rows = []
    for cls, d in df.groupby("truth"):
        ok = d[d["correct"]]
        tum = d[d["has_tumor"]]
        row = {"class": cls, "n": len(d), "accuracy": float(d["correct"].mean()),
               "correct_focused_outside_brain": float(ok["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(ok) else None,
               "n_with_tumor_mask": len(tum),
               "energy_tumor": float(tum["energy_tumor"].mean()) if len(tum) else None,
               "concentration_tumor": float(tum["concentration_tumor"].mean()) if len(tum) else None,
               "pointing_game": float(tum["pointing_hit"].mean()) if len(tum) else None,
               "prediction_brain_blanked_right": float((d["prediction_brain_blanked"] == d["truth"]).mean())
               if "prediction_brain_blanked" in d else None}
        if "delta_drop" in d and d["delta_drop"].notna().any():
            row["delta_drop"] = float(d["delta_drop"].mean())
            row["delta_focus"] = float(d["delta_focus"].mean())
        rows.append(row)
    return rows


def summarise_attention(df: pd.DataFrame, keep: np.ndarray | None) -> dict:
    def part(d: pd.DataFrame) -> dict:
        ok = d[d["correct"]]
        wrong = d[~d["correct"]]
        tum = d[d["has_tumor"]]
        return {
            "n": len(d),
            "n_correct": len(ok),
            "share_correct_focused_outside_brain": float(ok["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(ok) else None,
            "share_wrong_focused_outside_brain": float(wrong["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(wrong) else None,
            "focus_counts_correct": {f: int((ok["focus"] == f).sum()) for f in att.FOCUS_LABELS},
            "focus_counts_wrong": {f: int((wrong["focus"] == f).sum()) for f in att.FOCUS_LABELS},
            "mean_energy": {k: float(d[f"energy_{k}"].mean()) for k in ("background", "skull", "brain")},
            "mean_energy_tumor": float(tum["energy_tumor"].mean()) if len(tum) else None,
            "mean_concentration_tumor": float(tum["concentration_tumor"].mean()) if len(tum) else None,
            "pointing_game": float(tum["pointing_hit"].mean()) if len(tum) else None,
            "n_with_tumor_mask": len(tum),
            "flag_counts": {fl: int(d["flags"].str.contains(fl, regex=False).sum())
                            for fl in (att.FLAG_RIGHT_WRONG_REASON, att.FLAG_WRONG_BACKGROUND, att.FLAG_WRONG_SKULL,
                                       att.FLAG_TUMOR_MISSED)},
        }

    res = {"method": PRIMARY_METHOD, "all": part(df), "by_class": by_class(df)}
    if keep is not None and keep.any():
        res["leakage_free"] = part(df[keep])
    return res


def _version() -> str:
    from tumorlens import __version__

    return __version__


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return None if not np.isfinite(v) else v
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    return o
