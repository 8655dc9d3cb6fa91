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
    out = np.empty((len(samples), 1, recipe.size, recipe.size), dtype=np.float32)
    for i, s in enumerate(tqdm(samples.samples, desc=desc, unit="img", leave=False)):
        out[i, 0] = recipe(s.image)
    return torch.from_numpy(out)


class TensorImageDataset(Dataset):
    """Preprocessed images and label indices; augmentation happens per batch in the training step."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]
