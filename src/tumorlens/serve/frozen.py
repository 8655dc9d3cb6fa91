"""A frozen copy of the network for prediction-only passes.

TorchScript trace + freeze folds every BatchNorm into its convolution and removes the Python call
per layer. On this 2-core machine the default EfficientNet-Lite0 at 160 px took 11.2 instead of
14.2 ms CPU for one image and 8.5 instead of 11.4 ms per image in a batch of 4 (same numbers to
~1e-5 in the logits). Explanations keep the eager network: CAM methods hook its layers.

torch.jit is deprecated in favour of torch.compile, which needs a C++ compiler and tens of
seconds of compiling at start-up here; if tracing ever fails or disagrees with the network, the
eager network is used and a warning is logged.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable

import torch

from tumorlens.models.checkpoint import TumorModel

log = logging.getLogger("tumorlens.serve")
TOLERANCE = 1e-3  # largest accepted logit difference to the eager network


def frozen_logits(model: TumorModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """-> a function (N, 1, S, S) preprocessed batch -> logits, same results as model.net."""
    net = model.net.eval()
    if model.source:
        # a foreign model: tracing would record a black box's numpy call as a constant, and other
        # formats gain little; it runs as it is
        return eager_logits(net)
    size = model.recipe.size
    probe = torch.linspace(-2, 2, 2 * size * size, dtype=torch.float32).reshape(2, 1, size, size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notices
            traced = torch.jit.freeze(torch.jit.trace(copy.deepcopy(net), probe[:1]).eval())
            with torch.inference_mode():
                gap = float((traced(probe) - net(probe)).abs().max())
    except Exception as exc:  # noqa: BLE001 - any tracing failure: fall back to the network itself
        log.warning("prediction uses the eager network (tracing failed: %s)", str(exc).splitlines()[0] if str(exc) else exc)
        return eager_logits(net)
    if not gap <= TOLERANCE:
        log.warning("prediction uses the eager network (traced copy differs by %.2g)", gap)
        return eager_logits(net)

    @torch.inference_mode()
    def logits(x: torch.Tensor) -> torch.Tensor:
        return traced(x)

    return logits


def eager_logits(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    @torch.inference_mode()
    def logits(x: torch.Tensor) -> torch.Tensor:
        return net.eval()(x)

    return logits
