"""The comparison subset: every compared explainer's heatmaps on a small seeded subset of the
audited images (config.compare_n), for the faithfulness and sanity checks. They cost many
forward passes per image, so they run on the subset only; the subset's display images are kept
(at full precision) while their chunk is in memory, and the heatmaps computed once per method."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tumorlens.audit.checks.base import AuditContext, Check, CheckResult, Chunk, ChunkResult, ModelContext
from tumorlens.models.checkpoint import TumorModel

# (model, preprocessed input (N,1,S,S), targets (N,)) -> heatmaps (N,S,S) in [0, 1]
ExplainFn = Callable[[TumorModel, torch.Tensor, np.ndarray], np.ndarray]


def explainer(method: str, batch_size: int) -> ExplainFn:
    from tumorlens.explain import explain

    def run(model: TumorModel, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        return np.asarray(explain(model, x, method=method, targets=np.asarray(targets), batch_size=batch_size).heatmaps,
                          np.float32)

    return run


@dataclass
class ExplainerMaps(CheckResult):
    idx: np.ndarray  # positions of the subset in the audited set, sorted
    display: np.ndarray  # (n, S, S) float32 display images of the subset
    x: torch.Tensor  # (n, 1, S, S) model input
    targets: np.ndarray  # (n,) predicted classes: what each map explains
    fills: np.ndarray  # (n,) background grey
    regions: list  # (n,) Regions
    tumors: list  # (n,) tumor masks or None
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (n, S, S)
    ms_per_image: dict[str, float] = field(default_factory=dict)

    def to_summary(self) -> dict:
        return {}


class ExplainerMapsCheck(Check):
    name = "explainer_maps"
    timing_key = "explainers"

    def start(self, ctx: AuditContext) -> None:
        rng = np.random.default_rng(ctx.config.seed)
        self.idx = np.sort(rng.permutation(ctx.n)[: min(ctx.config.compare_n, ctx.n)])
        self.kept: dict[int, tuple] = {}

    def map_chunk(self, ctx: ModelContext, c: Chunk) -> dict[int, tuple]:
        wanted = set(self.idx.tolist())  # a small subset (compare_n): its full-precision images travel
        return {int(i): (c.display[j].copy(), float(c.fills[j]), c.regions[j], c.tumors[j])
                for j, i in enumerate(c.indices) if int(i) in wanted}

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        self.kept.update(done.parts[self.name])

    def finish(self, ctx: AuditContext) -> ExplainerMaps:
        from tumorlens.audit.forward import to_input

        parts = [self.kept[int(i)] for i in self.idx]
        display = np.stack([p[0] for p in parts])
        probs = ctx.probs()[self.idx]
        res = ExplainerMaps(self.idx, display, to_input(ctx.model, display), probs.argmax(1),
                            np.array([p[1] for p in parts], np.float32), [p[2] for p in parts], [p[3] for p in parts])
        for method in ctx.config.methods:
            t0 = time.perf_counter()
            res.heatmaps[method] = explainer(method, ctx.config.explain_batch(method))(ctx.model, res.x, res.targets)
            res.ms_per_image[method] = (time.perf_counter() - t0) * 1000 / max(len(self.idx), 1)
        return res
