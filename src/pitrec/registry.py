"""One registry for every swappable part: config sections, data readers, content encoders,
tokenizers, models and training recipes.

Components register themselves with a decorator where they are defined; ``load_components``
imports the modules that do so, which keeps the lookup tables complete without a central list
of classes that drifts from the code.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Modules whose import registers components. A missing optional module (not written yet, or an
# optional dependency absent) must not break the rest, so import errors of *these* modules are
# collected and reported on lookup instead of raised here.
COMPONENT_MODULES = [
    "pitrec.config_sections",
    "pitrec.models.sasrec",
    "pitrec.models.user_to_token",
    "pitrec.models.csa",
    "pitrec.models.item_to_token",
    "pitrec.data.readers",
    "pitrec.embed",
    "pitrec.tokenizers",
    "pitrec.train.recipes",
]


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        load_components()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            hint = ""
            if _IMPORT_ERRORS:
                hint = " (modules that failed to import: " + "; ".join(
                    f"{m}: {e}" for m, e in _IMPORT_ERRORS.items()) + ")"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}{hint}")
        return self._items[name]

    def names(self) -> list[str]:
        load_components()
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        load_components()
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        load_components()
        return name in self._items


SECTIONS = Registry("config section")
READERS = Registry("data format")
ENCODERS = Registry("content encoder")
TOKENIZERS = Registry("tokenizer")
RECIPES = Registry("training recipe")

_LOADED = False
_IMPORT_ERRORS: dict[str, str] = {}


def load_components() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in COMPONENT_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # only tolerate the component module itself being absent, never a broken import inside it
            if exc.name == mod or (exc.name and mod.startswith(exc.name + ".")):
                _IMPORT_ERRORS[mod] = str(exc)
            else:
                raise
