"""The audit check interface: every finding of `tumorlens audit` comes from one `Check`.

The runner (audit/runner.py) streams the audited images through the model in chunks and shows
every chunk to every check while it is in memory; it never holds every image at full precision.
A check is one module in this package with one class:

    from dataclasses import dataclass
    from tumorlens.audit.checks.base import Check, CheckResult, Chunk, AuditContext, VerdictItem, PASS, WARN, FAIL

    DROP_WARN = 0.02  # thresholds are module constants ...
    DROP_FAIL = 0.05
    THRESHOLDS = {"robustness": f"pass < {DROP_WARN:.0%} <= warn < {DROP_FAIL:.0%} <= fail"}  # ... and the text is formatted from them

    @dataclass
    class RobustnessResult(CheckResult):
        shifts: list[dict]
        worst_drop: float

        def to_summary(self) -> dict:          # the check's section(s) of summary.json
            return {"robustness": {"shifts": self.shifts, "worst_drop": self.worst_drop}}

    class RobustnessCheck(Check):
        name = "robustness"                    # its verdict line and timing key
        thresholds = THRESHOLDS

        def start(self, ctx: AuditContext) -> None:          # optional: before the first chunk
            self.hits = []

        def map_chunk(self, ctx: ModelContext, chunk: Chunk) -> np.ndarray:   # optional: every chunk, where its pixels are
            shifted = my_shift(chunk.display)                           # (n, S, S) display images in [0, 1]
            return ctx.predict(shifted).argmax(1) == chunk.truth         # small and picklable: it may cross the network

        def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:  # optional: every chunk, in audited order
            self.hits.append(done.parts[self.name])

        def finish(self, ctx: AuditContext) -> RobustnessResult:        # required
            ...

        def verdict(self, result: RobustnessResult) -> VerdictItem | None:  # optional (None: no verdict line)
            status = FAIL if result.worst_drop >= DROP_FAIL else (WARN if result.worst_drop >= DROP_WARN else PASS)
            return VerdictItem(self.name, status, f"worst shift costs {result.worst_drop:.1%} accuracy")

        def figures(self, result, ctx, fig_dir) -> list[Figure]:        # optional: PNGs for report.html
            return [Figure("robustness", my_plot(result, fig_dir / "robustness.png"))]

A check that cannot run on every model names what it needs of it (`needs = ("gradients",)`; the keys
of TumorModel.capabilities): on a model without it, the runner calls none of its hooks and its
verdict line is n/a with the reason (`not_run`); it never raises for a model it cannot serve.

then add `RobustnessCheck()` to `default_checks()` in audit/checks/__init__.py. That is all: the
runner calls the hooks; summary.json gets `to_summary()`; the verdict (terminal, report, JSON)
gets `verdict()`; report.html embeds `figures()` (a report section that shows them is one block in
templates/report.html.j2, reading the check's summary section as `s.<key>`).

Per chunk, two hooks: `map_chunk(ctx, chunk)` runs where the chunk's pixels are (in this process,
or on a Ray worker with its own copy of the model and of the check as `start` left it: `tumorlens
audit --ray`), so it reads only `ctx.model`, `ctx.config` and its own `start` state, changes
nothing, and returns a small picklable value (no full images); `on_chunk(ctx, done)` then runs in
this process, in audited order, and gets that value as `done.parts[name]` with the chunk's records
(`ChunkResult`). Both paths call the same function (audit/chunk_work.py: process_chunk).

What a chunk holds (`Chunk`): the samples, true and predicted class indices, calibrated
probabilities, the display images (the recipe's geometry, [0, 1], float32: edit these and call
`ctx.predict` to re-run the model on an edited version: every audit edit is made in display space,
see audit/forward.py), head/skull/brain `Regions`, tumor masks (or None), the background grey, the
per-image heatmaps of the primary explainer (config.PRIMARY_METHOD, [0, 1]), and the chunk's `ImageRecord`s.
`ImageRecord` is one audited image for the whole run: 8-bit copies for the report's galleries and
the columns of gradcam_analysis.csv (`record.columns`; add yours in `finish`, in the order you
want them in the CSV). `ctx.records` holds all of them, in audited order, once the pass is done.

Leakage runs first: after its `start`, `ctx.keep` is the leakage-free mask over the audited
images (None when it cannot be checked); report your figures on that subset too. A check whose
`finish` needs another check's result names it in `after`; the runner finishes in that order and
puts its result in `ctx.results[name]`. Summary sections and verdict lines follow the order of
`default_checks()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from tumorlens.anatomy.regions import Regions
    from tumorlens.audit.config import AuditConfig
    from tumorlens.data.sample import Sample, SampleSet
    from tumorlens.models.checkpoint import TumorModel

PASS, WARN, FAIL, NA = "pass", "warn", "fail", "n/a"


@dataclass
class VerdictItem:
    """One line of the verdict: a check's status and its plain sentence."""

    name: str
    status: str  # PASS / WARN / FAIL / NA
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Figure:
    """A figure file a check drew for the report. key: how the template finds it (figs[key]);
    a gallery (title and note set) is listed with the report's galleries instead."""

    key: str
    path: Path
    title: str | None = None
    note: str | None = None

    @property
    def is_gallery(self) -> bool:
        return self.title is not None


@dataclass
class ImageRecord:
    """One audited image, for the whole run (instead of parallel lists)."""

    index: int  # position in the audited set
    sample: Sample
    truth: int
    pred: int
    probs: np.ndarray  # (C,) calibrated probabilities
    display: np.ndarray  # (S, S) uint8 copy of the display image, for figures
    heatmap: np.ndarray  # (S, S) uint8 copy of the primary heatmap
    region_map: np.ndarray  # (S, S) uint8: 0 background, 1 skull, 2 brain (Regions.label_map)
    tumor: np.ndarray | None  # (S, S) bool tumor mask at model size, None when unknown
    fill: float  # the background grey that blanked pixels take
    columns: dict[str, Any] = field(default_factory=dict)  # its row of gradcam_analysis.csv

    @property
    def correct(self) -> bool:
        return self.truth == self.pred

    def display01(self) -> np.ndarray:
        return self.display.astype(np.float32) / 255


@dataclass
class Chunk:
    """Consecutive audited images, in memory while every check sees them."""

    start: int  # index of the first image in the audited set
    samples: list[Sample]
    truth: np.ndarray  # (n,) int64
    probs: np.ndarray  # (n, C)
    display: np.ndarray  # (n, S, S) float32 in [0, 1]
    regions: list[Regions]
    tumors: list[np.ndarray | None]
    fills: np.ndarray  # (n,) float32
    heatmaps: np.ndarray  # (n, S, S) float32 in [0, 1], primary method, explaining the prediction
    records: list[ImageRecord]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.samples))

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class ChunkResult:
    """A chunk's work as `on_chunk` sees it, in audited order: its records and what each check's
    `map_chunk` returned (parts[check name]); no full-precision pixels, as it may come from a Ray
    worker. seconds: each check's map_chunk time, and "primary_explain" (the per-image maps)."""

    start: int
    truth: np.ndarray  # (n,) int64
    probs: np.ndarray  # (n, C)
    records: list[ImageRecord]
    parts: dict[str, Any]
    seconds: dict[str, float]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.records))

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class ModelContext:
    """What `map_chunk` may read: the model and the run's settings (all a Ray worker has)."""

    model: TumorModel
    config: AuditConfig

    def predict(self, images01: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, C) of display-space images (edited or not)."""
        from tumorlens.audit.forward import probabilities01

        return probabilities01(self.model, images01, self.config.forward_batch)


@dataclass
class AuditContext(ModelContext):
    """What every check can read: the run's inputs, and what earlier stages produced."""

    samples: SampleSet  # the whole dataset (all splits)
    audited: SampleSet  # the images under audit
    audited_split: str | None
    truth: np.ndarray  # (N,) class indices of the audited images
    out: Path
    keep: np.ndarray | None = None  # leakage-free mask over audited images; set by the leakage check
    records: list[ImageRecord] = field(default_factory=list)
    results: dict[str, CheckResult] = field(default_factory=dict)
    seconds_primary_explain: float = 0.0  # time spent on the per-image heatmaps

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def n(self) -> int:
        return len(self.audited)

    def probs(self) -> np.ndarray:
        """(N, C) probabilities of every audited image (after the image pass)."""
        return np.stack([r.probs for r in self.records])

    def pred(self) -> np.ndarray:
        return np.array([r.pred for r in self.records], np.int64)

    def table(self) -> pd.DataFrame:
        """gradcam_analysis.csv as it stands: one row per record."""
        import pandas as pd

        return pd.DataFrame([r.columns for r in self.records])


@dataclass
class CheckResult:
    """A check's typed result. Subclasses are dataclasses; to_summary gives their part of
    summary.json as {top-level key: section} (one key named after the check for new checks)."""

    def to_summary(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class NotRun(CheckResult):
    """The result of a check the model cannot serve (a capability in `Check.needs` is missing)."""

    name: str
    reason: str

    def to_summary(self) -> dict[str, Any]:
        return {self.name: {"status": NA, "reason": self.reason}}


class Check:
    """Base class of the audit's checks: override `finish`, and any of the other hooks."""

    name: str = ""
    # model capabilities the check cannot run without (TumorModel.capabilities: "gradients", "cam",
    # "randomise", "training_hashes"); where one is missing the runner calls `not_run` instead of the hooks
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # checks whose results `finish` reads (ctx.results[name])
    thresholds: dict[str, str] = {}  # printed in the report and summary.json["verdict"]["thresholds"]
    timing_key: str | None = None  # summary.json["timing_seconds"] key its finish time adds to

    def start(self, ctx: AuditContext) -> None:
        """Before the image pass (all of ctx but records and results is set)."""

    def map_chunk(self, ctx: ModelContext, chunk: Chunk) -> Any:
        """What the check derives from a chunk's pixels (model passes on edited versions, per-image
        analyses), where the pixels are: reads ctx.model, ctx.config and its `start` state only, changes
        nothing, returns a small picklable value for `on_chunk` (None: nothing to derive)."""
        return None

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        """Each chunk, in audited order: done.parts[self.name] is what `map_chunk` returned."""

    def finish(self, ctx: AuditContext) -> CheckResult:
        raise NotImplementedError

    def not_run(self, ctx: AuditContext, reason: str) -> CheckResult:
        """The result when the model cannot serve this check; a check whose result other checks read
        (`after`) returns its own result type, empty, instead."""
        return NotRun(self.name, reason)

    def verdict(self, result: CheckResult) -> VerdictItem | None:
        return None

    def figures(self, result: CheckResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        return []
