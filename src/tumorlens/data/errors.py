"""Errors a data source raises; the CLI turns them into a one-line message."""


class DatasetError(ValueError):
    """A dataset cannot be used as given (empty, unlabeled, unknown layout). Names the path and what was expected."""


class UnreadableFile(Exception):
    """One file could not be read; the caller records it in SampleSet.skipped with this reason."""
