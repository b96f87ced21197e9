"""One generic registry class for methods, benchmarks and backbones.

Each registry lives with what it registers (methods here, benchmarks and backbones in the harness). Entries
register themselves where they are defined (a decorator or a call at the bottom of a method's
``__init__.py``). Lookups of unknown names fail with the list of valid ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> object, with discovery of self-registering packages.

    ``discover`` lists packages whose modules and sub-packages register entries on import, so listing a
    registry imports them on first use and adding an entry never edits a central file. ``entry_point_group``
    names a packaging entry-point group whose values are more such packages: packages above this one
    (baselines, the synthetic proxy) and third-party plugins join a registry without it naming them.
    """

    def __init__(self, kind: str, discover: Iterable[str] = (), entry_point_group: str | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = tuple(discover)
        self._group = entry_point_group
        self._discovered = False

    def register(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name != name.lower() or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{self.kind} name {name!r} must be lowercase letters, digits, '_' or '-'")
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        plugins = [ep.value for ep in entry_points(group=self._group)] if self._group else []
        for package_name in (*self._discover, *plugins):
            package = importlib.import_module(package_name)
            for info in pkgutil.iter_modules(getattr(package, "__path__", ()), package_name + "."):
                importlib.import_module(info.name)

    def get(self, name: str) -> T:
        self._ensure_discovered()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._ensure_discovered()
        return name in self._entries

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]


# Aurora registers itself from aurora.method; the baselines (one sub-package each) and any plugin join through
# the "aurora_bench.methods" entry points of their distribution.
METHODS: Registry[type] = Registry("method", discover=("aurora.method",), entry_point_group="aurora_bench.methods")

