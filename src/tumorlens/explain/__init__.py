"""Explainers behind one call: `explain(model, images, method)` -> heatmaps (N, H, W) in [0, 1].

Thin adapters over pytorch-grad-cam (CAM methods) and Captum (gradient and perturbation
methods); the registry of methods and their parameters is in methods.py, pictures in overlays.py.
"""

from tumorlens.explain.methods import CAM_METHODS, METHODS, SPECS, ExplainError, passes_per_image

# Each method's parameters and their defaults (None: derived from the input, see methods.py).
METHOD_PARAMS = {name: dict(spec.defaults) for name, spec in SPECS.items()}

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


__all__ = ["explain", "Explanation", "METHODS", "CAM_METHODS", "METHOD_PARAMS", "ExplainError", "overlay",
           "compare_figure", "passes_per_image"]
