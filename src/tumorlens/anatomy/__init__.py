"""Anatomy of a slice: head, skull-and-scalp ring, brain and background (regions.py), and the
head's bounding box that the preprocessing recipe can crop to (head.py). Below data's recipe, the
audit, training and the service, which all use it; imports only numpy and OpenCV."""
