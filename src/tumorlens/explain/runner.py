"""Explain files on disk: read images (one file or a folder), predict, explain, write one overlay PNG
per image (or one comparison figure per image for several methods) and predictions.csv."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tumorlens.explain.core import explain
from tumorlens.explain.methods import DEFAULT_METHOD, METHODS, ExplainError, gallery_order, method_spec
from tumorlens.explain.overlays import compare_figure, overlay, save_png
from tumorlens.inputcheck.check import check_samples


@dataclass
class RunResult:
    n_images: int
    outputs: list[Path]
    predictions_csv: Path
    skipped: list[tuple[str, str]]
    flagged: list[tuple[str, str]] = field(default_factory=list)  # (path, warning): unlike brain MRI (tumorlens.inputcheck)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """["steps=64", "baseline=zero"] -> {"steps": 64, "baseline": "zero"} (ints, floats, booleans)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ExplainError(f"parameter {item!r} has no '='; expected KEY=VALUE, e.g. steps=64")
        key, value = (s.strip() for s in item.split("=", 1))
        out[key] = _parse_value(value)
    return out


def _parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def methods_for(method: str) -> list[str]:
    if method.strip().lower() == "all":
        return list(METHODS)
    return [method_spec(m).name for m in method.split(",") if m.strip()]


def params_for(method: str, params: dict[str, Any], several: bool) -> dict[str, Any]:
    """With several methods, each takes only the parameters it knows; with one, a stray name is
    an error (explain raises it)."""
    if not several:
        return dict(params)
    spec = method_spec(method)
    return {k: v for k, v in params.items() if k in spec.defaults}


def output_stem(sample, root: Path | None) -> str:
    """A file-name-safe, unique-per-sample stem: the path below the root with '/' -> '__'."""
    p = Path(sample.path)
    try:
        rel = p.relative_to(root) if root is not None and root.is_dir() else Path(p.name)
    except ValueError:
        rel = Path(p.name)
    stem = "__".join(rel.with_suffix("").parts) or p.stem
    idx = sample.meta.get("slice_index")
    if idx is not None:
        stem += f"_s{int(idx):03d}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", stem)


def read_samples(path: Path):
    """Samples from one file or a folder, via the dataset readers (DICOM, NIfTI, .mat, images)."""
    from tumorlens.data.sources import open_dataset

    sset = open_dataset(path, allow_unlabeled=True, progress=Path(path).is_dir())
    return sset.samples, [(s.path, s.reason) for s in sset.skipped], Path(sset.root)


def read_mask(path: Path) -> np.ndarray:
    from tumorlens.data.errors import UnreadableFile
    from tumorlens.data.readers.images import read_image

    try:
        arr, _ = read_image(path)
    except UnreadableFile as exc:
        raise ExplainError(f"{path}: cannot read the mask: {exc}") from None
    return arr > 0


def resolve_target(target: str | None, classes: list[str]) -> int | None:
    if target is None:
        return None
    if target in classes:
        return classes.index(target)
    if target.lstrip("-").isdigit() and 0 <= int(target) < len(classes):
        return int(target)
    raise ExplainError(f"unknown target class {target!r}; choose one of: {', '.join(classes)} (or an index)")


def explain_files(model, path: Path, out: Path, method: str = DEFAULT_METHOD, target: str | None = None,
                  layer: str | None = None, batch_size: int = 32, params: dict | None = None, alpha: float = 0.5,
                  cmap: str = "jet", mask_path: Path | None = None, progress: bool = True) -> RunResult:
    methods = methods_for(method)
    if not methods:
        raise ExplainError(f"no method given; choose from: {', '.join(METHODS)} or 'all'")
    params = params or {}
    several = len(methods) > 1
    if several:
        stray = [k for k in params if not any(k in method_spec(m).defaults for m in methods)]
        if stray:
            raise ExplainError(f"no chosen method takes parameter(s) {stray}")
    t = resolve_target(target, model.classes)
    samples, skipped, root = read_samples(Path(path))
    extra_mask = read_mask(mask_path) if mask_path is not None else None
    if extra_mask is not None and len(samples) != 1:
        raise ExplainError(f"--mask applies to a single image; {path} holds {len(samples)} images")
    if extra_mask is not None and extra_mask.shape != samples[0].image.shape:
        raise ExplainError(f"mask {mask_path} is {extra_mask.shape[1]}x{extra_mask.shape[0]} but the image is "
                           f"{samples[0].image.shape[1]}x{samples[0].image.shape[0]}; they must match")
    out.mkdir(parents=True, exist_ok=True)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(samples) * len(methods), desc="explain", unit="map")
    rows, outputs, used_stems, flagged = [], [], set(), []
    recipe = model.recipe
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            x = model.prepare([s.image for s in chunk])
            probs = model.probabilities(x)
            checks = check_samples(chunk, [s.image for s in chunk])
            pred = probs.argmax(axis=1)
            targets = np.full(len(chunk), t) if t is not None else pred
            maps: dict[str, np.ndarray] = {}
            for m in methods:
                if bar is not None:
                    bar.set_description(f"explain {m}")
                ex = explain(model, x, method=m, targets=targets, batch_size=batch_size, layer=layer,
                             **params_for(m, params, several))
                maps[m] = ex.heatmaps
                if bar is not None:
                    bar.update(len(chunk))
            for j, s in enumerate(chunk):
                stem = output_stem(s, root)
                while stem in used_stems:  # two files that flatten to one name
                    stem += "_"
                used_stems.add(stem)
                image01 = recipe.display(s.image)
                raw_mask = extra_mask if extra_mask is not None else s.mask
                mask = recipe.mask(raw_mask, s.image) if raw_mask is not None else None
                if mask is not None and not mask.any():
                    mask = None
                tcls = model.classes[int(targets[j])]
                if several:
                    file = out / f"{stem}_methods.png"
                    title = (f"{Path(s.path).name}: predicted {model.classes[pred[j]]} ({probs[j, pred[j]]:.2f}), "
                             f"explaining {tcls}")
                    fig = compare_figure(image01, {m: maps[m][j] for m in gallery_order(methods)}, mask=mask,
                                         path=file, title=title, alpha=alpha, cmap=cmap)
                    del fig
                else:
                    file = save_png(out / f"{stem}_{methods[0]}.png",
                                    overlay(image01, maps[methods[0]][j], mask=mask, alpha=alpha, cmap=cmap))
                outputs.append(file)
                rows.append({
                    "path": s.path, "label": s.label or "", "predicted": model.classes[pred[j]],
                    "confidence": f"{probs[j, pred[j]]:.4f}",
                    **{f"p_{c}": f"{probs[j, k]:.4f}" for k, c in enumerate(model.classes)},
                    "explained_class": tcls, "method": "all" if set(methods) == set(METHODS) else ",".join(methods),
                    "output": file.name,
                    "input_check_score": "" if checks[j].score is None else f"{checks[j].score:.3f}",
                    "input_check_warning": checks[j].message(),
                })
                if not checks[j].ok:
                    flagged.append((s.path, checks[j].message()))
    finally:
        if bar is not None:
            bar.close()
    csv_path = out / "predictions.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path"])
        writer.writeheader()
        writer.writerows(rows)
    return RunResult(len(samples), outputs, csv_path, skipped, flagged)
