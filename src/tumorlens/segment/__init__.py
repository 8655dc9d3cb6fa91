"""The tumor segmenter: a U-Net that outlines the tumor on slices without expert masks (model.py),
Dice/IoU and false-positive figures (metrics.py), `tumorlens segment` (run.py, commands.py) and what
the audit takes from it (audit.py). Training lives in tumorlens.training.segmentation.

A package of its own above data, models and explain (it uses the preprocessing recipe, the
pretrained-weight loader and the overlay drawing), not inside anatomy/, which sits below data."""
