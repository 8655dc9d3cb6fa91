"""The audit: checks/ (one module per check), the runner, verdict, comparison and report.

Calling this package, `tumorlens.audit(model, data, ...)`, runs the Python API's audit (audit/api.py).
"""

from tumorlens.callable_module import make_callable


def _audit(*args, **kwargs):
    from tumorlens.audit.api import audit  # on first call: the package itself stays light to import

    return audit(*args, **kwargs)


make_callable(__name__, _audit)
