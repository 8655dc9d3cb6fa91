"""The audit: checks/ (one module per check), the runner, verdict, comparison and report.

Calling this package, `tumorlens.audit(model, data, ...)`, runs the Python API's audit (tumorlens/api.py).
"""

from tumorlens.callable_module import make_callable

make_callable(__name__)
