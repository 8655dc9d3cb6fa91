"""`tumorlens.audit(...)` and `tumorlens.explain(...)` are the Python API's functions, yet
`tumorlens.audit` and `tumorlens.explain` are also subpackages: once a subpackage is imported,
Python binds its module to that name on the package, hiding the function. Those two modules are
therefore made callable: calling the module calls the API function of the same name (tumorlens/api.py)."""

from __future__ import annotations

import sys
import types


class CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from tumorlens import api

        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    sys.modules[module_name].__class__ = CallableModule
