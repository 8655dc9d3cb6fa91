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


class AugmentedImageDataset(Dataset):
    """Training images edited per image as they are drawn: acquisition augmentation (before the
    recipe's intensity step, where a scanner acts), tumor removal and outside-brain randomisation
    (after it, in display space, where the audit edits pixels). `base` holds the [0, 1] images before the
    intensity step when `acquisition` is given, the display images otherwise (float16 to halve
    the memory; 7,000 slices at 224 px are 0.7 GB)."""

    def __init__(self, base: np.ndarray, labels: np.ndarray, recipe: PreprocessRecipe, acquisition=None, outside=None,
                 removal=None, soft: np.ndarray | None = None):
        self.base, self.recipe, self.acquisition, self.outside = base, recipe, acquisition, outside
        self.removal = removal  # tumorlens.training.tumor_removal.TumorRemoval: may relabel the image
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.soft = soft  # (N, C) a teacher's soft targets on the clean view (training/distill.py), or None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        img = self.base[i].astype(np.float32)
        label = int(self.labels[i])
        if self.acquisition is not None:
            img = self.recipe.standardise(self.acquisition(img))
        if self.removal is not None:
            img, label = self.removal(img, i, label)
        if self.outside is not None:
            img = self.outside(img, i)
        x = torch.from_numpy(self.recipe.normalize(img)[None])
        if self.soft is None:
            return x, torch.tensor(label)
        # a relabelled (tumor-removed) view keeps its hard label as target: the teacher never saw it
        soft = self.soft[i] if label == int(self.labels[i]) else np.eye(self.soft.shape[1], dtype=np.float32)[label]
        return x, torch.tensor(label), torch.from_numpy(soft)


def prepare_per_image(samples: SampleSet, recipe: PreprocessRecipe, need_before_intensity: bool, need_regions: bool):
    """One pass over the training images: the images the dataset starts from (before the intensity
    step if `need_before_intensity`, display images otherwise; float16), and the audit's brain
    masks and background greys of the display images (if `need_regions`)."""
    from tumorlens.audit.counterfactuals import background_value
    from tumorlens.anatomy.regions import segment_regions

    n, s = len(samples), recipe.size
    base = np.empty((n, s, s), np.float16)
    brains = np.zeros((n, s, s), bool) if need_regions else None
    fills = np.zeros(n, np.float32)
    for i, smp in enumerate(tqdm(samples.samples, desc="preprocessing training images", unit="img", leave=False)):
        img01 = recipe.acquired(smp.image)
        d = recipe.standardise(img01)
        base[i] = img01 if need_before_intensity else d
        if need_regions:
            regions = segment_regions(d)
            brains[i], fills[i] = regions.brain, background_value(d, regions.background)
    return base, brains, fills


class TensorImageDataset(Dataset):
    """Preprocessed images and label indices; augmentation happens per batch in the training step."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, soft: np.ndarray | None = None):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.soft = soft  # (N, C) a teacher's soft targets (training/distill.py), or None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if self.soft is None:
            return self.images[i], self.labels[i]
        return self.images[i], self.labels[i], torch.from_numpy(self.soft[i])
