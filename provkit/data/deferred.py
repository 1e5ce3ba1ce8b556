"""Modules imported on first use: :func:`deferred` gives a stand-in that imports the module when one of its
attributes is first read.

pandas, pyarrow and numpy take 0.4-1 s to import, and ``provkit fetch`` needs none of them before its first log
call: the store's manifest, lock and gaps are JSON and files. So the store and the fetch name them through
stand-ins, and the import happens when the first page is normalised, while the service answers the calls sent
after it. Type checkers see the real modules (``if TYPE_CHECKING`` at each use).
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__all__ = ["deferred"]


class _Deferred(types.ModuleType):
    """Stands in for the module ``name``; reading an attribute imports it (once: then sys.modules has it)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_deferred_module"] = None

    def __getattr__(self, attribute: str) -> Any:
        module = self.__dict__["_deferred_module"]
        if module is None:
            # importlib's per-module locks make a first use from two threads at once safe.
            module = self.__dict__["_deferred_module"] = importlib.import_module(self.__name__)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<deferred module {self.__name__!r}>"


def deferred(name: str) -> Any:
    """A stand-in for the module ``name`` that imports it when an attribute is first read."""
    return _Deferred(name)
