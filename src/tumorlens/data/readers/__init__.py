"""Per-format readers. Each turns one file into slices (image, meta, and whatever the format knows).

A reader raises UnreadableFile with a short reason for a file it cannot use; the dataset
layer (sources.py) records that reason and carries on.
"""
