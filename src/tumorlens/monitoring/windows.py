"""The monitoring report: the recent audit-trail rows of one model, cut into windows of consecutive
requests, each compared with the reference (drift.py). What `GET /v1/monitoring` answers and
`tumorlens monitor` writes; the same for an empty trail (no windows, no alerts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tumorlens.monitoring.drift import Thresholds, compare_window
from tumorlens.monitoring.reference import ReferenceProfile


def cut_windows(rows: Sequence[Mapping], thresholds: Thresholds, max_windows: int) -> list[Sequence[Mapping]]:
    """The last max_windows windows of `window` rows, oldest first (rows come oldest first); a trailing
    partial window is kept when it has at least min_rows rows."""
    size = thresholds.window
    windows = [rows[i:i + size] for i in range(0, len(rows), size)]
    if windows and len(windows[-1]) < size and len(windows[-1]) < thresholds.min_rows:
        windows.pop()
    return windows[-max_windows:] if max_windows > 0 else []


def monitoring_report(rows: Sequence[Mapping], reference: ReferenceProfile | None, model_version: str,
                      classes: Sequence[str], thresholds: Thresholds = Thresholds(), max_windows: int = 20,
                      other_versions: int = 0) -> dict:
    """rows: the model's audit-trail rows with features (dicts as AuditTrail.records gives), oldest first."""
    windows = []
    for part in cut_windows(rows, thresholds, max_windows):
        result = compare_window(part, reference, thresholds, classes)
        windows.append({"start": part[0]["created_at"], "end": part[-1]["created_at"],
                        "first_request": part[0]["request_id"], "last_request": part[-1]["request_id"], **result})
    latest = windows[-1] if windows else None
    notes = []
    if reference is None:
        notes.append("no reference profile for this model: drift is not tested (serve --reference DATASET, or a "
                     "checkpoint shipped with one); counts and estimated accuracy only")
    if other_versions:
        notes.append(f"{other_versions} rows of other model versions are not part of this report")
    return {
        "model_version": model_version,
        "reference": reference.summary() if reference else None,
        "thresholds": thresholds.to_dict(),
        "rows": len(rows),
        "windows": windows,
        "alerts": latest["alerts"] if latest else [],
        "status": "no data" if latest is None else ("alert" if latest["alerts"] else "ok"),
        "notes": notes,
    }
