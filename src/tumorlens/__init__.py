"""tumorlens: brain-tumor MRI classification that shows whether its decisions are clinically meaningful.

Importing tumorlens changes nothing in your process. The command line and the service apply two
process settings at start-up (tumorlens.runtime.configure_process); a library user who wants the
same speed calls it once, before torch is imported.
"""

from tumorlens.version import __version__

# The Python API (tumorlens/api.py), imported on first use so that `import tumorlens` stays light.
__all__ = ["AuditReport", "audit", "explain", "predict", "load_model", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from tumorlens import api

        return getattr(api, name)
    raise AttributeError(f"module 'tumorlens' has no attribute {name!r}")
