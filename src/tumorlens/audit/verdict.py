"""The verdict: each check of the audit as pass / warn / fail with one plain sentence, from the
checks' typed results (so the report, summary.json and the terminal say the same thing).

Each check's thresholds are module constants beside its verdict (audit/checks/<check>.py), and
their text, printed in the report, is formatted from those constants. They are judgement calls,
meant to be read together with the figures, not instead of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from tumorlens.audit.checks.base import FAIL, NA, PASS, WARN, VerdictItem

__all__ = ["FAIL", "NA", "PASS", "WARN", "HEADLINES", "make_verdict", "overall_status"]

HEADLINES = {
    PASS: "No sign that the model decides from outside the brain or from leaked data.",
    WARN: "Warnings: read the flagged checks before trusting the accuracy.",
    FAIL: "The accuracy is not trustworthy as it stands: see the failed checks.",
}


def overall_status(items: Sequence[VerdictItem]) -> str:
    statuses = [c.status for c in items]
    return FAIL if FAIL in statuses else (WARN if WARN in statuses else PASS)


def make_verdict(items: Sequence[VerdictItem], thresholds: dict[str, str]) -> dict:
    """summary.json's "verdict": overall status, headline, one line per check, the thresholds."""
    overall = overall_status(items)
    return {
        "status": overall,
        "headline": HEADLINES[overall],
        "checks": [c.to_dict() for c in items],
        "findings": [f"[{c.status}] {c.name}: {c.detail}" for c in items],
        "thresholds": dict(thresholds),
    }
