"""segment_regions on phantoms whose head, skull and brain are known exactly."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from tumorlens.anatomy.regions import Regions, segment_regions


def toy_head(size=160, seed=0, center=(0.5, 0.5), radii=(0.36, 0.30)):
    """An ellipse head: bright scalp ring, dark bone, grey brain with texture, a bright tumor."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = center
    r = np.sqrt(((yy - cy) / radii[0]) ** 2 + ((xx - cx) / radii[1]) ** 2)
    head = r <= 1.0
    brain = r <= 0.9
    img = np.full((size, size), 0.03, np.float32)
    img[head] = 0.9  # scalp
    img[(r <= 0.95) & ~brain] = 0.15  # bone
    img[brain] = 0.45 + 0.1 * rng.standard_normal(brain.sum())
    tumor = ((yy - cy - 0.08) ** 2 + (xx - cx + 0.05) ** 2) < 0.06**2
    img[tumor] = 0.85
    img += 0.02 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32), head, brain, tumor


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("seed,center,radii", [(0, (0.5, 0.5), (0.36, 0.30)), (1, (0.45, 0.55), (0.42, 0.35)),
                                               (2, (0.5, 0.5), (0.22, 0.2))])
def test_regions_match_known_phantom(seed, center, radii):
    img, head, brain, tumor = toy_head(seed=seed, center=center, radii=radii)
    reg = segment_regions(img)
    # a partition of the image
    total = reg.background.astype(int) + reg.skull + reg.brain
    assert (total == 1).all()
    assert (reg.head == (reg.skull | reg.brain)).all()
    assert iou(reg.head, head) > 0.9  # the edge may grow by a pixel (partial-volume rim is kept)
    assert iou(reg.brain, brain) > 0.85
    assert (reg.brain & tumor).sum() / tumor.sum() == 1.0
    assert reg.background[[0, 0, -1, -1], [0, -1, 0, -1]].all()
    # the brain region stops at the phantom's bone: at most 2 px into it (the head edge is kept generous)
    assert not (reg.brain & ~ndi.binary_dilation(brain, iterations=2)).any()
    assert (reg.skull & head & ~brain).sum() > 0.6 * (head & ~brain).sum()


def test_dark_tumor_inside_head_is_not_background():
    img, head, brain, tumor = toy_head(seed=3)
    img[tumor] = 0.02  # necrotic, as dark as the background: hole filling must keep it in the head
    reg = segment_regions(img)
    assert reg.brain[tumor].all()


def test_thin_frame_line_does_not_become_the_head():
    img, head, _, _ = toy_head(seed=4)
    img[2, :] = img[-3, :] = img[:, 2] = img[:, -3] = 1.0  # a scanner frame, as some Kaggle slices have
    reg = segment_regions(img)
    assert iou(reg.head, head) > 0.9


def test_blank_image_is_all_background():
    reg = segment_regions(np.zeros((64, 64), np.float32))
    assert reg.background.all() and not reg.head.any()


def test_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        segment_regions(np.zeros((3, 64, 64)))


def test_from_masks_makes_a_partition():
    img, head, brain, _ = toy_head()
    reg = Regions.from_masks(head, brain)
    assert ((reg.background.astype(int) + reg.skull + reg.brain) == 1).all()
    assert (reg.label_map()[brain] == 2).all()


def test_regions_on_data_phantoms_with_exact_masks():
    """The data part's phantoms carry exact head/brain masks: the segmentation must agree."""
    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.data.synthetic import make_phantoms

    recipe = PreprocessRecipe(size=128)
    for s in make_phantoms(16, size=128, seed=3).samples:  # varied head size, tilt and skull thickness
        reg = segment_regions(recipe.display(s.image))
        head, brain = s.meta["head_mask"], s.meta["brain_mask"]
        assert iou(reg.head, head) > 0.9, s.path
        assert iou(reg.brain, brain) > 0.8, s.path
        skull = s.meta["skull_mask"]
        assert (reg.brain & skull).sum() < 0.15 * skull.sum(), s.path  # the bone stays out of the brain
        if s.mask.any():
            assert (reg.brain & s.mask).sum() / s.mask.sum() > 0.98, s.path
        assert reg.background[~ndi.binary_dilation(head, iterations=2)].all()
