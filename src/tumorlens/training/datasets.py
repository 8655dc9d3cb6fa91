"""SampleSet -> tensors the training loop can use. Images are preprocessed once and kept in
memory at model size (7,000 slices at 160 px are about 700 MB), so epochs do not decode files."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet


def preprocess_all(samples: SampleSet, recipe: PreprocessRecipe, desc: str = "preprocessing") -> torch.Tensor:
    """Every readable sample at model size, read in chunks (pixels are read lazily, data/sample.py).

    A file found damaged only now is left out, removed from `samples` and listed in its skipped
    (SampleSet.drop_unreadable), so labels taken from `samples` afterwards line up with the rows."""
    out = np.empty((len(samples), 1, recipe.size, recipe.size), dtype=np.float32)
    n = 0
    for chunk in samples.chunks(64, progress=True, desc=desc):
        for image in chunk.images:
            out[n, 0] = recipe(image)
            n += 1
    for skip in samples.drop_unreadable():
        tqdm.write(f"skipped {skip.path}: {skip.reason}")
    return torch.from_numpy(out if n == len(out) else out[:n].copy())


class TensorImageDataset(Dataset):
    """Preprocessed images and label indices; augmentation happens per batch in the training step."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]
