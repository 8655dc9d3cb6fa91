"""`tumorlens.audit(...)` and `tumorlens.explain(...)` are the Python API's functions, yet
`tumorlens.audit` and `tumorlens.explain` are also subpackages: once a subpackage is imported, Python
binds its module to that name on the package, hiding the function. Those two packages therefore make
themselves callable: calling the package calls its API function (audit/api.py, explain/api.py)."""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


class CallableModule(types.ModuleType):
    """A module whose call runs the function stored as its `__call_target__`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__call_target__(*args, **kwargs)


def make_callable(module_name: str, target: Callable[..., Any]) -> None:
    module = sys.modules[module_name]
    module.__call_target__ = target
    module.__class__ = CallableModule
