"""Explainers behind one call: `explain(model, images, method)` -> heatmaps (N, H, W) in [0, 1].

Thin adapters over pytorch-grad-cam (CAM methods) and Captum (gradient and perturbation
methods); the registry of methods and their parameters is in methods.py, pictures in overlays.py.
"""

from tumorlens.explain.core import Explanation, explain
from tumorlens.explain.methods import CAM_METHODS, METHODS, SPECS, ExplainError, passes_per_image
from tumorlens.explain.overlays import compare_figure, overlay

# Each method's parameters and their defaults (None: derived from the input, see methods.py).
METHOD_PARAMS = {name: dict(spec.defaults) for name, spec in SPECS.items()}

__all__ = ["explain", "Explanation", "METHODS", "CAM_METHODS", "METHOD_PARAMS", "ExplainError", "overlay",
           "compare_figure", "passes_per_image"]
