"""Image features for the learned input check: the bundled segmenter's encoder, average-pooled.

Why the segmenter's encoder and not the default classifier: it was trained on both datasets
(figshare slices and Kaggle tumor-free slices), it stays when the default model is retrained or
replaced, and it judges the image whatever model is being audited or served (a foreign model has
no features we could rely on). It runs at the segmenter's own 128 px, a third of the classifier's
224 px pixels. Encoder stages 2-4 (24 + 40 + 112 channels) are pooled: they keep the texture and
contrast that tell a CT, an ultrasound or a phantom from an MR slice. The deepest stage (320
channels, what the segmenter needs to find a tumor) is not built: in a first look on the validation
slices it separated the foreign set far worse than the shallower ones; the first (16 channels, the
finest texture) is left out too: without it the validation slices' shifted copies were flagged a
little less often and the foreign set caught as often or more (benchmarks/experiments/input_check_cleaning.py).

Before the encoder, two acquisition artefacts that leave an MRI an MRI are taken out, on the
slice resized to 256 px (benchmarks/RESULTS.md, bench_input_check.py, has the measurements):
- a k-space spike (a bright point in k-space: stripes over the whole picture): spectral peaks that
  stand out from their 5 x 5 neighbourhood of the spectrum by more than NOTCH_RATIO are brought down
  to it (numpy's FFT; the two axes of the spectrum are left alone, since a straight frame line or
  border puts its energy there and flattening it there rings);
- noise: a 3 x 3 median filter (OpenCV), which keeps edges and the coarse appearance (skull, CT
  window, photograph) that tells the foreign images apart.
Stronger cleaning was measured and not kept (benchmarks/experiments/input_check_cleaning.py): a 5 x 5
median or non-local means flag fewer shifted slices but let most phantoms and head CTs through, and
non-local means costs about ten times the features themselves.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

STAGES = (2, 3, 4)  # encoder stages pooled into the feature vector (timm's feature indices 1-3)
_PREFIX = "encoder.model."  # the timm encoder's weights inside the segmenter file (smp's TimmUniversalEncoder)


WORK_SIZE = 256  # the slice is cleaned at this size, then resized to the segmenter's own 128 px
NOTCH_RATIO = 4.0  # a spectral peak this many times its 5 x 5 neighbourhood's median is a spike (at 6, 2.8x as many
# spiked validation slices were flagged: benchmarks/RESULTS.md, input_check_cleaning.py)
NOTCH_MIN_RADIUS = 6  # ... unless it is this close to the centre (the picture's coarse shape)
MEDIAN = 3  # median filter size against noise
CLEANING = f"despike{NOTCH_RATIO:g}-median{MEDIAN}@{WORK_SIZE}"  # recorded in the version string


def despike(image: np.ndarray, ratio: float = NOTCH_RATIO) -> np.ndarray:
    """Flatten isolated spectral peaks (k-space spikes) of a 2-D float image, off the spectrum's axes.
    Written here: the libraries at hand add spikes (TorchIO) or filter whole bands; none notches
    isolated peaks found relative to their neighbourhood."""
    h, w = image.shape
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    magnitude = np.abs(spectrum).astype(np.float32)
    local = cv2.medianBlur(magnitude, 5)
    yy, xx = np.ogrid[:h, :w]
    dy, dx = np.abs(yy - h // 2), np.abs(xx - w // 2)
    spikes = (magnitude > ratio * local) & (dy * dy + dx * dx > NOTCH_MIN_RADIUS**2) & (dy > 1) & (dx > 1)
    if not spikes.any():
        return image
    spectrum[spikes] *= local[spikes] / magnitude[spikes]
    return np.real(np.fft.ifft2(np.fft.ifftshift(spectrum))).astype(np.float32)


class PooledEncoder(torch.nn.Module):
    """(N, 1, S, S) -> (N, D): each stage's feature map averaged over space."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.mean(dim=(2, 3)) for m in self.encoder(x)], dim=1)


def load_encoder(path: Path, stages: Sequence[int] = STAGES) -> tuple[torch.nn.Module, dict]:
    """The segmenter file's encoder alone, as a timm feature extractor up to stage 4
    (weights only; the decoder and the last stage are not built). Built from timm directly rather than
    through tumorlens.segment: segmentation-models-pytorch takes seconds to import, and the features
    are the same to 1e-5 (checked when this was written)."""
    import timm

    payload = torch.load(path, map_location="cpu", weights_only=True)
    encoder = timm.create_model(payload["arch"]["encoder"], features_only=True, in_chans=1, pretrained=False,
                                out_indices=tuple(i - 1 for i in stages))
    state = {k[len(_PREFIX):]: v.float() for k, v in payload["state_dict"].items() if k.startswith(_PREFIX)}
    encoder.load_state_dict(state, strict=False)
    missing = set(encoder.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{path}: the segmenter's encoder lacks {len(missing)} tensors the input check needs")
    return encoder.eval(), payload


class FeatureExtractor:
    """Raw 2-D slices (any size, any range) -> float32 feature vectors, via the segmenter's recipe."""

    def __init__(self, path: str | Path | None = None):
        from tumorlens.assets import ASSETS
        from tumorlens.data.preprocess import PreprocessRecipe

        path = Path(path) if path is not None else ASSETS / "segmenter.pt"
        encoder, payload = load_encoder(path)
        self.recipe = PreprocessRecipe.from_dict(payload["recipe"])
        self.work = PreprocessRecipe(size=WORK_SIZE, clip_low=0.0, clip_high=100.0)  # resize + min-max to [0, 1]
        # the segmenter's own version string (segment/model.py) and the cleaning, which the reference file records
        self.version = (f"unet-{payload['arch']['encoder']}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
                        f"+{CLEANING}")
        self._net = PooledEncoder(encoder).eval()
        self._forward = self._net

    def freeze(self) -> "FeatureExtractor":
        """Trace the network for one-image calls (the service); seconds at start-up, so batch callers
        (predict, evaluate, explain) keep the eager network, whose Python overhead a batch amortises."""
        if self._forward is self._net:
            self._forward = _frozen(self._net, self.recipe.size)
        return self

    def clean(self, image: np.ndarray) -> np.ndarray:
        """Raw 2-D slice -> the same at 256 px in [0, 1], despiked and median-filtered (the segmenter's
        recipe then resizes, clips and standardises it)."""
        return cv2.medianBlur(despike(self.work.display(image)), MEDIAN)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        images = [np.asarray(im, dtype=np.float32) for im in images]
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(self.recipe.batch(self.clean(im) for im in images[i : i + batch_size]))
            out.append(self._forward(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _frozen(net: torch.nn.Module, size: int):
    """TorchScript trace + freeze (BatchNorm folded, no Python per layer: measurably cheaper for one
    image, see serve/frozen.py); the eager network if tracing fails."""
    probe = torch.linspace(-2, 2, size * size, dtype=torch.float32).reshape(1, 1, size, size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notices
            traced = torch.jit.freeze(torch.jit.trace(net, probe).eval())
            if float((traced(probe) - net(probe)).abs().max()) <= 1e-3:
                return traced
    except Exception:  # noqa: BLE001 - any tracing failure: the eager network gives the same features
        pass
    return net


_LOCK = threading.Lock()
_SHARED: FeatureExtractor | None = None


def shared_extractor() -> FeatureExtractor:
    """One extractor per process (loading and tracing take about a second)."""
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            _SHARED = FeatureExtractor()
        return _SHARED
