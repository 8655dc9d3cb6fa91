"""Explainers behind one call: `explain(model, images, method)` -> heatmaps (N, H, W) in [0, 1].

Thin adapters over pytorch-grad-cam (CAM methods, cam.py) and Captum (gradient and perturbation
methods, attribution.py). Each method is one `Method` object in the registry (methods.py): its
library class, parameters, cost, and how the service and the figures treat it. Pictures are in
overlays.py.

Calling this package, `tumorlens.explain(model, raw_images, ...)`, runs the Python API's explain
(explain/api.py), which takes any model and raw images; `tumorlens.explain.explain` takes a
TumorModel and preprocessed input.
"""
from tumorlens.callable_module import make_callable

from tumorlens.explain.methods import (
    BASELINE_METHODS,
    CAM_METHODS,
    DEFAULT_METHOD,
    FAST_METHODS,
    METHODS,
    ONE_PASS_METHODS,
    REGISTRY,
    ExplainError,
    Method,
    gallery_order,
    method_spec,
    passes_per_image,
)

# Each method's parameters and their defaults (None: derived from the input, see methods.py).
METHOD_PARAMS = {name: dict(m.defaults) for name, m in REGISTRY.items()}

# explain() and the overlays are loaded on first use: the CLI imports this package to register its
# command, and loading torch here made every `tumorlens` command (even `data check`) pay ~8 s CPU.
_LAZY = {"explain": "tumorlens.explain.core", "Explanation": "tumorlens.explain.core",
         "overlay": "tumorlens.explain.overlays", "compare_figure": "tumorlens.explain.overlays"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["explain", "Explanation", "Method", "REGISTRY", "METHODS", "CAM_METHODS", "FAST_METHODS",
           "ONE_PASS_METHODS", "BASELINE_METHODS", "DEFAULT_METHOD", "METHOD_PARAMS", "ExplainError", "method_spec",
           "gallery_order", "overlay", "compare_figure", "passes_per_image"]


def _explain_any(*args, **kwargs):
    from tumorlens.explain.api import explain as explain_any  # on first call

    return explain_any(*args, **kwargs)


make_callable(__name__, _explain_any)
