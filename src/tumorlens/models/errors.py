"""Errors of model building and loading (their own module, so that registry.py and pretrained.py
need not import each other)."""

from tumorlens.errors import TumorlensError


class UnknownArchitecture(TumorlensError):
    """No architecture of that name in the registry."""


class PretrainedWeightsError(TumorlensError):
    """Pretrained weights are missing, unreadable or do not fit the architecture."""
