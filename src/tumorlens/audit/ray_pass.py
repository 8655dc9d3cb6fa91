"""The audit's image pass on a Ray cluster (`tumorlens audit --ray`): the chunks go to an actor
pool (tumorlens.cluster.ordered_map), each actor runs audit/chunk_work.py's process_chunk with its
own model, and the ChunkResults come back here in audited order for the checks' `on_chunk`.

What crosses the network: the model once per actor (its file path and spec when the audit was given
a file, which every worker must be able to read; else the model itself, pickled once into Ray's
object store), the checks that derive something from the pixels as their `start` left them, per
chunk the sample references and class indices out and the records and check parts back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial

from tumorlens.audit.checks.base import AuditContext, Check, ChunkResult
from tumorlens.audit.chunk_work import ChunkWorker, maps_chunks
from tumorlens.audit.config import AuditError
from tumorlens.models.checkpoint import TumorModel


def _the_model(model: TumorModel) -> TumorModel:
    return model


def chunks_on_ray(ctx: AuditContext, checks: Sequence[Check], starts: Sequence[int], size: int,
                  load_model: Callable[[], TumorModel] | None) -> Iterator[ChunkResult]:
    """process_chunk of every chunk, on the Ray cluster ctx.config.ray, in audited order."""
    from tumorlens.cluster import ordered_map, require_ray

    require_ray()
    from ray import cloudpickle

    load_model = load_model or partial(_the_model, ctx.model)
    try:  # refuse here, in plain words, what Ray would refuse later in its own
        cloudpickle.dumps(load_model)
    except Exception as exc:  # noqa: BLE001 (pickling fails with whatever the model's objects raise)
        raise AuditError(f"this model cannot be sent to Ray workers ({type(exc).__name__}: {exc}); give the audit "
                         "the model's file (and spec) instead, which each worker loads itself") from None
    mapping = [c for c in checks if maps_chunks(c)]
    items = [(s, ctx.audited.samples[s : s + size], ctx.truth[s : s + size]) for s in starts]
    worker = partial(ChunkWorker, load_model, ctx.config, mapping)
    cfg = ctx.config
    for done in ordered_map(worker, items, address=cfg.ray, workers=cfg.ray_workers, progress=cfg.progress,
                            desc="auditing images on Ray", unit_sizes=[len(it[1]) for it in items]):
        for rec in done.records:  # the records came back without their samples: ours are the same
            rec.sample = ctx.audited.samples[rec.index]
        for c in checks:
            done.parts.setdefault(c.name, None)
        yield done
