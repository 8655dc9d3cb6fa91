"""tumorlens.audit(model, data, **options) -> AuditReport: the audit from Python, on any model.

Inputs are never modified: the dataset is copied before the audit drops unreadable files or attaches
predicted tumor masks. The command line's `tumorlens audit` runs the same steps.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tumorlens.audit.config import AuditConfig
from tumorlens.data.sample import Sample, SampleSet
from tumorlens.models.spec import FIELDS as SPEC_KEYS

__all__ = ["AuditReport", "audit", "as_samples"]

CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(AuditConfig))


def as_samples(data: Any, class_map: Any = None) -> SampleSet:
    """A dataset folder or file, a SampleSet (copied), or (image, label) pairs, as a SampleSet the
    caller's objects are safe from.

    Args:
        data: a path; a SampleSet; or an iterable of (2-D array, class name) pairs.
        class_map: rename dataset classes, {old: new} or "old=new,...".

    Returns:
        SampleSet: new Sample objects (the pixels are shared, read-only).
    """
    if isinstance(data, (str, Path)):
        from tumorlens.data.sources import open_dataset

        return open_dataset(data, class_map=class_map)
    if isinstance(data, SampleSet):
        samples = [_copy_sample(s) for s in data.samples]
        return SampleSet(samples, list(data.classes), data.root, data.kind, list(data.skipped))
    samples = []
    for i, item in enumerate(data):
        image, label = item
        samples.append(Sample(np.asarray(image, np.float32), label=label, path=f"image_{i}"))
    if not samples:
        from tumorlens.data.errors import DatasetError

        raise DatasetError("no images given")
    return SampleSet(samples, sorted({s.label for s in samples if s.label is not None}), root="memory",
                     kind="in-memory images")


def _copy_sample(s: Sample) -> Sample:
    c = copy.copy(s)
    c.meta = dict(s.meta)
    return c


def _split_options(options: dict[str, Any]) -> tuple[dict, dict]:
    spec = {k: v for k, v in options.items() if k in SPEC_KEYS}
    config = {k: v for k, v in options.items() if k in CONFIG_KEYS}
    unknown = sorted(set(options) - set(spec) - set(config) - {"class_map"})
    if unknown:
        from tumorlens.errors import TumorlensError

        raise TumorlensError(f"unknown option(s) {unknown}; model spec keys: {', '.join(SPEC_KEYS)}; "
                             f"audit options: {', '.join(CONFIG_KEYS)}")
    return spec, config


class AuditReport:
    """The result of tumorlens.audit: verdict, summary, per-image records, and the report's files.

    Attributes:
        verdict: {"status", "headline", "checks": [{"name", "status", "detail"}], ...}.
        summary: everything summary.json holds.
        records: one row per audited image (gradcam_analysis.csv) as a pandas DataFrame.
        folder: where report.html, summary.json, gradcam_analysis.csv and figures/ are now.
    """

    def __init__(self, summary: dict, folder: Path, keep: Any = None):
        import pandas as pd

        self.summary = summary
        self.folder = Path(folder)
        self.records = pd.read_csv(self.folder / "gradcam_analysis.csv")
        self._keep = keep  # the temporary folder's owner: the files live as long as the report

    @property
    def verdict(self) -> dict:
        return self.summary["verdict"]

    @property
    def status(self) -> str:
        return self.verdict["status"]

    def save(self, out: str | Path) -> Path:
        """Copy report.html, summary.json, gradcam_analysis.csv and figures/ into `out`; returns it."""
        out = Path(out)
        if out.resolve() != self.folder.resolve():
            shutil.copytree(self.folder, out, dirs_exist_ok=True)
        return out

    def __repr__(self) -> str:
        checks = ", ".join(f"{c['name']}={c['status']}" for c in self.verdict["checks"])
        return f"<AuditReport {self.status.upper()}: {len(self.records)} images; {checks}>"

    def _repr_html_(self) -> str:
        from html import escape

        colour = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "n/a": "#6e7781"}
        rows = "".join(
            f"<tr><td style='color:{colour.get(c['status'], '#000')};font-weight:bold'>{escape(c['status'])}</td>"
            f"<td>{escape(c['name'])}</td><td style='text-align:left'>{escape(c['detail'])}</td></tr>"
            for c in self.verdict["checks"])
        return (f"<div><b style='color:{colour.get(self.status)}'>{escape(self.status.upper())}</b>: "
                f"{escape(self.verdict.get('headline', ''))}<br>{len(self.records)} images; full report: "
                f"{escape(str(self.folder / 'report.html'))}<table>{rows}</table></div>")


def audit(model: Any, data: Any, out: str | Path | None = None, *, spec: Any = None, trust_code: bool = False,
          class_map: Any = None, **options: Any) -> AuditReport:
    """Audit a model on a labelled dataset: is the accuracy real, and does it decide from the tumor?

    Args:
        model: a model file, nn.Module, Keras model, function (images -> probabilities) or TumorModel.
        data: a dataset folder, a SampleSet or (image, label) pairs; never modified.
        out: folder for report.html, summary.json, gradcam_analysis.csv and figures/ (None: a
            temporary folder; AuditReport.save copies it).
        spec: the model spec (file, dict or ModelSpec); its keys may also be given as options.
        trust_code: allow model formats whose loading runs code from the file.
        class_map: rename dataset classes, {old: new}.
        **options: model spec keys (classes, input_size, normalize, ...) and audit settings
            (AuditConfig fields: methods, limit, compare_n, sanity_n, robustness_n, seed, progress, ...;
            ray="auto" or a cluster address runs the per-image work on Ray workers (`tumorlens[ray]`):
            a model file is loaded by each worker, any other model is sent to them pickled).

    Returns:
        AuditReport: verdict, summary, per-image records; .save(dir); renders in Jupyter.
    """
    from tumorlens.audit.runner import run_audit
    from tumorlens.models.loading import load_model

    spec_keys, config_keys = _split_options(options)
    tm = load_model(model, spec, trust_code=trust_code, **spec_keys)
    samples = as_samples(data, class_map)
    if "methods" in config_keys and isinstance(config_keys["methods"], str):
        config_keys["methods"] = tuple(config_keys["methods"].split(","))
    cfg = AuditConfig(**config_keys)
    keep = None
    if out is None:
        keep = tempfile.TemporaryDirectory(prefix="tumorlens-audit-")
        out = keep.name
    on_worker = None
    if cfg.ray and isinstance(model, (str, Path)):  # each Ray worker loads the file itself, as here
        spec_file = str(Path(spec).resolve()) if isinstance(spec, (str, Path)) else spec
        on_worker = partial(load_model, str(Path(model).resolve()), spec_file, trust_code=trust_code, **spec_keys)
    summary = run_audit(tm, samples, out, cfg, model_path=str(model) if isinstance(model, (str, Path)) else None,
                        load_model=on_worker)
    return AuditReport(summary, Path(out), keep)
