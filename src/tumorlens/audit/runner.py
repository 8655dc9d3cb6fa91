"""The whole audit of one model on one dataset: run_audit(model, samples, out) -> summary dict.

Order of work (the logic of every finding lives in its check, audit/checks/; this file only
feeds and collects):
1. which images: the Testing split when the dataset has Training and Testing (the rest is
   training data), else everything; optionally a seeded, class-mixed subset (--limit);
2. every check's `start` (the leakage check: data checks on the whole dataset -> leakage-free subset);
3. per chunk of images: display image, regions, tumor mask, predictions and the per-image
   explainer's heatmaps (config.PRIMARY_METHOD, the localisation map); every check's `on_chunk` sees the chunk while it is in memory
   (attention analysis, shortcut versions, tumor counterfactuals, the comparison subset);
4. every check's `finish` (in the order their `after` needs) -> typed results; the explainer
   comparison, deletion/insertion curves and the randomisation check run here, on a small seeded
   subset (they cost many forward passes per image);
5. verdict, figures, gradcam_analysis.csv, summary.json, report.html.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tumorlens.audit.checks import NA, AuditContext, Check, CheckResult, VerdictItem, default_checks
from tumorlens.audit.checks.base import NotRun
from tumorlens.audit.chunk_work import process_chunk
from tumorlens.audit.config import AuditConfig, AuditError, fit_to_model
from tumorlens.data.sample import SampleSet
from tumorlens.evaluation.inference import truth_indices
from tumorlens.memory import release_freed_memory
from tumorlens.serialization import jsonable
from tumorlens.models.checkpoint import TumorModel


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


def read_audited(audited: SampleSet, cfg: AuditConfig) -> tuple[SampleSet, dict | None]:
    """Read every audited image once, before any check starts (with --ray the workers read them): a
    file damaged beyond its header (which fails only when its pixels are decoded) is skipped and
    listed in data.skipped_files instead of crashing the audit half-way or misaligning the checks'
    per-image arrays. When the input check runs (screen_inputs), it is this read; else the pixels
    are only decoded. The image pass reads them again (the cache keeps few 2-D files)."""
    if cfg.data_checks or cfg.exclude_unlike_mri:
        return screen_inputs(audited, cfg)
    from tumorlens.data.streaming import map_images

    map_images(_readable, audited.samples, progress=cfg.progress, desc="reading audited images", ray=cfg.ray,
               ray_workers=cfg.ray_workers)
    audited.drop_unreadable()
    return audited, None


def _readable(image) -> bool:
    return True


def screen_inputs(audited: SampleSet, cfg: AuditConfig) -> tuple[SampleSet, dict | None]:
    """The input check over the audited images (tumorlens.inputcheck: is each a brain MRI slice?),
    whatever the model: a count, the flagged files and thumbnails for the report; unreadable files
    dropped. Flagged images stay in the audit unless cfg.exclude_unlike_mri. With --ray it runs on
    the workers, which read the images."""
    from tumorlens.inputcheck.summary import check_sample_set

    summary, ok = check_sample_set(audited, cfg.progress, "input check (brain MRI?)", ray=cfg.ray,
                                   ray_workers=cfg.ray_workers)  # an unreadable image passes and learns its error
    ok = ok[[s.error is None for s in audited.samples]]
    audited.drop_unreadable()
    summary["excluded"] = 0
    if cfg.exclude_unlike_mri and len(audited) and not ok.all():
        if not ok.any():
            raise AuditError(f"{audited.root}: the input check finds every audited image unlike brain MRI; nothing "
                             "is left to audit without --exclude-unlike-mri")
        audited = audited.subset(np.flatnonzero(ok))
        summary["excluded"] = int((~ok).sum())
    if summary["flagged"]:
        tqdm.write(f"warning: {summary['message']}" + (" (excluded: --exclude-unlike-mri)" if summary["excluded"] else
                                                      "; they stay in the audit (--exclude-unlike-mri leaves them out)"))
    return audited, summary


# -- the image pass -------------------------------------------------------------------------------
def image_pass(ctx: AuditContext, checks: Sequence[Check], timing: dict[str, float],
               load_model: Callable[[], TumorModel] | None = None) -> None:
    """Stream the audited images in chunks: every check's `map_chunk` where the pixels are (here, or
    on Ray workers with --ray), then its `on_chunk` here in audited order; keep one ImageRecord per
    image (8-bit copies for the report's figures). load_model: builds the model on a Ray worker."""
    size = max(ctx.config.batch_size, 64)
    starts = range(0, ctx.n, size)
    if ctx.config.ray:
        from tumorlens.audit.ray_pass import chunks_on_ray

        results = chunks_on_ray(ctx, checks, starts, size, load_model)
    else:
        results = (process_chunk(ctx, checks, s, ctx.audited.samples[s : s + size], ctx.truth[s : s + size])
                   for s in starts)
    bar = tqdm(total=ctx.n, desc="auditing images", unit="img", disable=not ctx.config.progress or ctx.config.ray)
    for done in results:
        ctx.seconds_primary_explain += done.seconds.get("primary_explain", 0.0)
        for check in checks:
            t0 = time.perf_counter()
            check.on_chunk(ctx, done)
            timing[check.name] = timing.get(check.name, 0.0) + done.seconds.get(check.name, 0.0) \
                + time.perf_counter() - t0
        ctx.records.extend(done.records)
        bar.update(len(done))
    bar.close()


def finish_order(checks: Sequence[Check]) -> list[Check]:
    """The checks in list order, each after the checks its `after` names."""
    by_name = {c.name: c for c in checks}
    done: list[Check] = []

    def visit(c: Check, path: tuple[str, ...]) -> None:
        if c in done:
            return
        if c.name in path:
            raise AuditError(f"audit checks depend on each other in a circle: {' -> '.join(path + (c.name,))}")
        for dep in c.after:
            if dep not in by_name:
                raise AuditError(f"audit check {c.name!r} needs check {dep!r}, which is not in the list")
            visit(by_name[dep], path + (c.name,))
        done.append(c)

    for c in checks:
        visit(c, ())
    return done


# -- the audit ------------------------------------------------------------------------------------
def run_audit(model: TumorModel, samples: SampleSet, out: str | Path, config: AuditConfig | None = None,
              model_path: str | None = None, checks: Sequence[Check] | None = None,
              load_model: Callable[[], TumorModel] | None = None) -> dict:
    """Audit `model` on `samples`; writes report.html, summary.json, gradcam_analysis.csv (+ figures/)
    into `out` and returns the summary. checks: default_checks() unless given. load_model: with
    config.ray, how a Ray worker builds the model (a picklable function; None: `model` itself is sent)."""
    from tumorlens.audit.report import write_report
    from tumorlens.audit.verdict import make_verdict

    cfg = config or AuditConfig()
    check_methods(cfg.methods)
    cfg, skipped_methods = fit_to_model(cfg, model)
    checks = list(default_checks() if checks is None else checks)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage: dict[str, float] = {}
    per_check: dict[str, float] = {}
    t_all = time.perf_counter()

    audited, audited_split = select_images(samples, cfg.limit, cfg.seed)
    if len(audited) == 0:
        raise AuditError(f"{samples.root}: no images to audit")
    audited, input_check = read_audited(audited, cfg)
    if len(audited) == 0:
        raise AuditError(f"{samples.root}: none of the audited images could be read ({len(samples.skipped)} skipped)")
    ctx = AuditContext(model=model, samples=samples, audited=audited, audited_split=audited_split,
                       truth=truth_indices(model, audited), config=cfg, out=out)

    from tumorlens.audit.spec_check import check_spec

    spec_check = check_spec(model, audited, ctx.truth, cfg.seed)  # a foreign model's declared spec, checked first
    for w in spec_check.get("warnings", []):
        tqdm.write(f"warning: {w['message']}")

    # a check the model cannot serve (its `needs`) runs no hook: its result is `not_run`, n/a with the reason
    missing = {c.name: why for c in checks if (why := _missing(c, model))}
    running = [c for c in checks if c.name not in missing]

    t0 = time.perf_counter()
    for check in running:
        t1 = time.perf_counter()
        check.start(ctx)
        release_freed_memory()  # between stages: see memory.release_freed_memory
        per_check[check.name] = time.perf_counter() - t1
    stage["data_checks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    image_pass(ctx, running, per_check, load_model)
    stage["per_image"] = time.perf_counter() - t0

    stage.setdefault("shortcuts_counterfactuals_summary", 0.0)
    stage.setdefault("explainers", 0.0)
    for check in finish_order(checks):
        t0 = time.perf_counter()
        ctx.results[check.name] = check.not_run(ctx, missing[check.name]) if check.name in missing else check.finish(ctx)
        release_freed_memory()
        dt = time.perf_counter() - t0
        per_check[check.name] = per_check.get(check.name, 0.0) + dt
        key = check.timing_key or check.name
        if key != "data_checks":  # start hooks are timed as one stage
            stage[key] = stage.get(key, 0.0) + dt

    results: list[tuple[Check, CheckResult]] = [(c, ctx.results[c.name]) for c in checks]
    summary = {
        "tumorlens_version": _version(),
        "model": {"path": model_path, "arch": model.arch, "version": model.version, "classes": model.classes,
                  "input_size": model.recipe.size, "temperature": model.temperature, **_foreign(model, cfg, skipped_methods)},
        "data": {"root": samples.root, "kind": samples.kind, "n_total": len(samples), "audited_split": audited_split,
                 "skipped_files": len(samples.skipped), "has_masks": any(r.tumor is not None for r in ctx.records),
                 "mask_source": ctx.results["tumor_masks"].fill["mask_source"] if "tumor_masks" in ctx.results else None},
        "n_images": ctx.n,
        "input_check": input_check,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    }
    thresholds: dict[str, str] = {}
    items = []
    for check, result in results:
        summary.update(result.to_summary())
        thresholds.update(check.thresholds)
        item = VerdictItem(check.name, NA, f"not run: {result.reason}") if isinstance(result, NotRun) \
            else check.verdict(result)
        if item is not None:
            items.append(item)
    summary["verdict"] = make_verdict(items, thresholds)
    if spec_check:
        summary["spec_check"] = spec_check
        summary["verdict"]["spec_warnings"] = [w["message"] for w in spec_check["warnings"]]

    t0 = time.perf_counter()
    df = ctx.table()
    df.to_csv(out / "gradcam_analysis.csv", index=False)
    stage["total_before_report"] = time.perf_counter() - t_all
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    summary["timing_seconds"] = {k: round(v, 2) for k, v in stage.items()}
    figures = [f for check, result in results if not isinstance(result, NotRun)
               for f in check.figures(result, ctx, fig_dir)]
    write_report(summary, figures, out)
    summary["timing_seconds"]["report"] = round(time.perf_counter() - t0, 2)
    summary["timing_seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    summary["timing_seconds"]["checks"] = {k: round(v, 2) for k, v in per_check.items()}
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    return summary


def _missing(check: Check, model: TumorModel) -> str | None:
    """Why the model cannot serve `check` (the capabilities it needs and lacks), or None."""
    lacking = [need for need in check.needs if not model.capabilities.get(need)]
    return f"the model cannot serve {' or '.join(CAPABILITY_WORDS.get(n, n) for n in lacking)}" if lacking else None


CAPABILITY_WORDS = {"gradients": "gradients (a black box)", "cam": "a CAM layer",
                    "randomise": "randomised weights (its weights cannot be reached)",
                    "training_hashes": "the hashes of its training images"}


def _foreign(model: TumorModel, cfg: AuditConfig, skipped_methods: dict[str, str]) -> dict:
    """What the report says about a model tumorlens did not train: its format, spec, capabilities,
    the per-image map used and the explainers it cannot serve (nothing for a tumorlens checkpoint)."""
    if not model.source:
        return {}
    from tumorlens.models.loading import describe

    return {**describe(model), "primary_map": cfg.primary, "skipped_methods": skipped_methods}


def _version() -> str:
    from tumorlens.version import __version__

    return __version__
