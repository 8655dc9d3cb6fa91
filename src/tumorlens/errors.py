"""TumorlensError: the base class of every error a user can cause and fix (a bad path, a dataset
tumorlens cannot use, an unknown option value, a checkpoint that does not load).

The command line catches TumorlensError (and the OS's file errors) and prints its message on one
line with exit code 2; any other exception is a bug and keeps its traceback. It subclasses
ValueError so that library code written against earlier versions (`except ValueError`) still
catches it.
"""


class TumorlensError(ValueError):
    """An error the user can fix; its message names what was wrong and what to do."""
