"""What the input check says about one image: refuse it, withhold the class, or nothing to say."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass
class InputCheck:
    refuse: bool = False  # no prediction at all (colour photo, blank image)
    unlike_training: bool = False  # predict, but withhold the class
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    score: float | None = None  # the learned detector's score (higher = less like the training slices)
    threshold: float | None = None  # its threshold: flagged above it

    @property
    def ok(self) -> bool:
        return not (self.refuse or self.unlike_training)

    def message(self) -> str:
        """All findings in one line (empty when ok)."""
        return "; ".join(f.message for f in self.findings)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "refuse": self.refuse, "unlike_training": self.unlike_training,
                "score": None if self.score is None else round(self.score, 3),
                "threshold": None if self.threshold is None else round(self.threshold, 3),
                "findings": [f.to_dict() for f in self.findings]}
