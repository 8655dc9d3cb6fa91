"""Overlays and the method comparison figure."""

import numpy as np
import pytest
from PIL import Image

from tumorlens.explain import compare_figure, overlay


def _scene(size=80):
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.clip(0.4 + 0.1 * np.sin(xx / 5.0), 0, 1).astype(np.float32)
    heat = np.zeros((size, size), np.float32)
    heat[10:30, 50:70] = 1.0  # hot square, top right
    mask = (yy - 60) ** 2 + (xx - 20) ** 2 <= 8**2  # tumor, bottom left
    return image, heat, mask


def test_overlay_colours_the_hot_region_and_leaves_cold_anatomy_alone():
    image, heat, _ = _scene()
    rgb = overlay(image, heat, alpha=0.6, cmap="jet")
    assert rgb.shape == (80, 80, 3) and rgb.dtype == np.uint8
    hot = rgb[15:25, 55:65].astype(int)
    assert (hot[..., 0] - hot[..., 2]).mean() > 60  # jet's hot end is red
    cold = rgb[60:70, 60:70].astype(int)
    gray = np.round(image[60:70, 60:70] * 255).astype(int)
    assert np.abs(cold - gray[..., None]).max() <= 1  # zero heat: the MRI shows through unchanged


def test_alpha_controls_opacity():
    image, heat, _ = _scene()
    faint = overlay(image, heat, alpha=0.1)[20, 60].astype(int)
    strong = overlay(image, heat, alpha=0.9)[20, 60].astype(int)
    gray = int(round(image[20, 60] * 255))
    assert np.abs(strong - gray).sum() > 3 * np.abs(faint - gray).sum()


def test_tumor_outline_is_drawn_on_the_mask_border_only():
    image, heat, mask = _scene()
    rgb = overlay(image, heat, mask=mask)
    green = (rgb[..., 1] == 255) & (rgb[..., 0] == 0) & (rgb[..., 2] == 0)
    assert green.sum() > 20
    ys, xs = np.nonzero(green)
    dist = np.hypot(ys - 60, xs - 20)
    assert np.all(np.abs(dist - 8) <= 1.5)  # on the circle's rim, not inside


def test_heatmap_of_another_size_is_resized_to_the_image():
    image, heat, _ = _scene(80)
    small = heat[::2, ::2]
    rgb = overlay(image, small)
    assert rgb.shape == (80, 80, 3)


def test_overlay_rejects_bad_settings():
    image, heat, _ = _scene()
    with pytest.raises(ValueError, match="unknown colour map 'rainbowz'"):
        overlay(image, heat, cmap="rainbowz")
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        overlay(image, heat, alpha=2)


def test_compare_figure_saves_one_png_with_every_method(tmp_path):
    image, heat, mask = _scene()
    maps = {"gradcam": heat, "ig": heat[::-1], "occlusion": heat.T}
    path = tmp_path / "fig" / "compare.png"
    fig = compare_figure(image, maps, mask=mask, path=path, title="case 1")
    assert path.is_file()
    with Image.open(path) as im:
        w, h = im.size
    assert w > 3 * h  # four panels side by side in one row
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["image + tumor outline", "gradcam", "ig", "occlusion"]
    with pytest.raises(ValueError, match="at least one heatmap"):
        compare_figure(image, {})
