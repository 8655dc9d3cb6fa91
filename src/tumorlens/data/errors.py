"""Errors a data source raises; the CLI turns them into a one-line message."""

from tumorlens.errors import TumorlensError


class DatasetError(TumorlensError):
    """A dataset cannot be used as given (empty, unlabeled, unknown layout). Names the path and what was expected."""


class UnreadableFile(Exception):
    """One file could not be read; the caller records it in SampleSet.skipped with this reason.

    kind says what is wrong, so that the service can answer with the right status without parsing
    the message: "damaged" (truncated or corrupt data), "too_large" (more pixels than a decoder
    accepts), "no_pixels" (a DICOM header without an image), "unsupported" (a readable file of a
    shape or type tumorlens does not handle, e.g. a 5-D volume).
    """

    def __init__(self, reason: str, kind: str = "damaged"):
        super().__init__(reason)
        self.kind = kind
