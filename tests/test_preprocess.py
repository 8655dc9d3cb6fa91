"""The preprocessing recipe gives the numbers every checkpoint was trained with: a faster path may
never change a pixel of the model input."""

import numpy as np
import pytest

from tumorlens.data.preprocess import PreprocessRecipe


def _percentile_definition(recipe, image):
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [recipe.clip_low, recipe.clip_high])
    if hi <= lo:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("clip", [(0, 100), (1, 99), (0, 99.5), (0.5, 100)])
def test_intensity_scaling_is_exactly_the_percentile_clip(clip):
    rng = np.random.default_rng(1)
    recipe = PreprocessRecipe(size=48, clip_low=clip[0], clip_high=clip[1])
    images = [rng.normal(100, 40, (48, 48)), rng.integers(0, 4096, (60, 52)), rng.random((48, 48)) * 1e-3 - 7]
    for image in images:
        np.testing.assert_array_equal(recipe.scale01(recipe.geometry(image)), _percentile_definition(recipe, recipe.geometry(image)))
    assert not recipe.scale01(np.full((48, 48), 5.0)).any()  # a constant image is all zeros, not NaN


def test_batch_is_the_single_images_stacked():
    rng = np.random.default_rng(2)
    recipe = PreprocessRecipe(size=32)
    images = [rng.normal(0, 1, (40 + i, 50)) for i in range(3)]
    batch = recipe.batch(images)
    assert batch.shape == (3, 1, 32, 32) and batch.dtype == np.float32
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i, 0], recipe(image))
    assert recipe.batch([]).shape == (0, 1, 32, 32)
