"""Lazy package exports (PEP 562), so `from exporter.drift import DataDriftDetector` works
while the pure modules of the same package can be imported without pulling in the API layer."""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy(exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `name` from `exports[name]` on first use."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - it is the module hook
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(name)

    return __getattr__
