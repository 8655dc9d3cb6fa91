"""The audit's per-image work on one chunk of samples, as ONE function for both places it runs:
the in-process image pass (audit/runner.py) and a Ray worker (`tumorlens audit --ray`, ChunkWorker).

process_chunk reads the chunk's pixels, runs the model and the per-image explainer, builds the
ImageRecords (8-bit copies for the report, CSV columns) and asks every check for its `map_chunk`
part (shifted, blanked and tumor-removed versions through the model...). What it returns
(ChunkResult) holds no full-precision pixels, so it is what crosses the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tumorlens.anatomy.regions import segment_regions
from tumorlens.audit.checks.base import Check, Chunk, ChunkResult, ImageRecord, ModelContext
from tumorlens.audit.counterfactuals import background_value
from tumorlens.audit.forward import to_input
from tumorlens.memory import release_freed_memory

if TYPE_CHECKING:
    from tumorlens.audit.config import AuditConfig
    from tumorlens.data.sample import Sample
    from tumorlens.models.checkpoint import TumorModel


def _to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def process_chunk(ctx: ModelContext, checks: Sequence[Check], start: int, samples: Sequence[Sample],
                  truth: np.ndarray) -> ChunkResult:
    """Everything the audit computes from the pixels of samples[start : start + n] (truth: their class indices)."""
    from tumorlens.explain import explain

    model, cfg, recipe = ctx.model, ctx.config, ctx.model.recipe
    display = np.stack([recipe.display(s.image) for s in samples])
    tumors = [recipe.mask(s.mask, s.image) if s.mask is not None else None for s in samples]
    regions = [segment_regions(d) for d in display]
    fills = np.array([background_value(d, r.background) for d, r in zip(display, regions)], np.float32)
    probs = ctx.predict(display)
    pred = probs.argmax(1)
    t0 = time.perf_counter()
    heat = np.asarray(explain(model, to_input(model, display), method=cfg.primary, targets=pred,
                              batch_size=cfg.explain_batch(cfg.primary)).heatmaps, np.float32)
    seconds = {"primary_explain": time.perf_counter() - t0}

    records = []
    for j, s in enumerate(samples):
        rec = ImageRecord(index=start + j, sample=s, truth=int(truth[j]), pred=int(pred[j]), probs=probs[j],
                          display=_to_u8(display[j]), heatmap=_to_u8(heat[j]), region_map=regions[j].label_map(),
                          tumor=tumors[j], fill=float(fills[j]))
        rec.columns.update({"path": s.path, "split": s.split, "patient_id": s.patient_id,
                            "truth": model.classes[truth[j]], "prediction": model.classes[pred[j]],
                            "correct": bool(pred[j] == truth[j]), "confidence": float(probs[j].max()),
                            "p_true": float(probs[j, truth[j]])})
        records.append(rec)
    chunk = Chunk(start, list(samples), truth, probs, display, regions, tumors, fills, heat, records)
    parts = {}
    for check in checks:
        t0 = time.perf_counter()
        parts[check.name] = check.map_chunk(ctx, chunk)
        seconds[check.name] = time.perf_counter() - t0
    release_freed_memory()  # the chunk's model passes are done: hand their pages back
    return ChunkResult(start, truth, probs, records, parts, seconds)


def maps_chunks(check: Check) -> bool:
    """Whether the check derives anything from the pixels (overrides map_chunk): only those go to workers."""
    return type(check).map_chunk is not Check.map_chunk


class ChunkWorker:
    """process_chunk on a Ray worker: built once per actor (loads the model there), then called per
    chunk with (start, samples, truth). The samples are references (lazy samples pickle their file
    path, not their pixels) and are read on the worker; the records come back without them (the
    caller puts its own samples back), so no pixels travel either way."""

    def __init__(self, load_model: Callable[[], TumorModel], config: AuditConfig, checks: Sequence[Check]):
        self.ctx = ModelContext(load_model(), config)
        self.checks = list(checks)

    def __call__(self, item: tuple[int, list[Sample], np.ndarray]) -> ChunkResult:
        start, samples, truth = item
        done = process_chunk(self.ctx, self.checks, start, samples, truth)
        for rec in done.records:
            rec.sample = None
        return done
