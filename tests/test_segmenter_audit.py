"""The audit with predicted tumor masks: slices without expert masks get the bundled segmenter's,
and summary.json / report.html say so and quote its validated Dice."""

import json

from typer.testing import CliRunner


def test_audit_with_predicted_masks_says_where_the_masks_came_from(tmp_path):
    from tumorlens.cli import app

    out = tmp_path / "audit"
    r = CliRunner().invoke(app, ["audit", "--demo", "--predicted-masks", "--limit", "8", "--compare-n", "2", "--sanity-n", "1",
                                 "--methods", "gradcam", "--no-data-checks", "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    tm = s["tumor_masks"]
    assert s["data"]["mask_source"] == tm["mask_source"] == "predicted"
    assert tm["n_predicted_masks"] > 0 and tm["n_expert_masks"] + tm["n_predicted_masks"] == s["n_images"]
    assert tm["segmenter"]["cv_dice_mean"] is not None and tm["segmenter"]["heldout_dice_mean"] is not None
    # the predicted masks reach the tumor figures: every audited tumor slice now has a mask
    assert s["attention"]["all"]["pointing_game"] is not None
    html = (out / "report.html").read_text()
    assert "predicted</strong> by the segmenter" in html and f"{tm['segmenter']['cv_dice_mean']:.2f}" in html
