"""The audit's checks, one module each; `default_checks()` is the list the runner loops over.
How to write one: see base.py."""

from __future__ import annotations

from tumorlens.audit.checks.base import (
    FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Chunk, ChunkResult, Figure, ImageRecord, ModelContext,
    VerdictItem,
)

__all__ = ["FAIL", "NA", "PASS", "WARN", "AuditContext", "Check", "CheckResult", "Chunk", "ChunkResult", "Figure",
           "ImageRecord", "ModelContext", "VerdictItem", "default_checks"]


def default_checks() -> list[Check]:
    """The checks of `tumorlens audit`, in the order of summary.json's sections and the verdict's
    lines (the runner finishes them in the order their `after` needs)."""
    from tumorlens.audit.checks.attention import AttentionCheck
    from tumorlens.audit.checks.classification import ClassificationCheck
    from tumorlens.audit.checks.counterfactuals import CounterfactualCheck
    from tumorlens.audit.checks.explainer_maps import ExplainerMapsCheck
    from tumorlens.audit.checks.faithfulness import FaithfulnessCheck
    from tumorlens.audit.checks.leakage import LeakageCheck
    from tumorlens.audit.checks.robustness import RobustnessCheck
    from tumorlens.audit.checks.sanity import SanityCheck
    from tumorlens.audit.checks.shortcut import ShortcutCheck
    from tumorlens.audit.checks.atlas import AtlasCheck
    from tumorlens.audit.checks.strategies import StrategiesCheck
    from tumorlens.audit.checks.tumor_masks import TumorMaskCheck

    return [LeakageCheck(), TumorMaskCheck(), ClassificationCheck(), AttentionCheck(), ShortcutCheck(), ExplainerMapsCheck(),
            FaithfulnessCheck(), SanityCheck(), CounterfactualCheck(), RobustnessCheck(), AtlasCheck(),
            StrategiesCheck()]
