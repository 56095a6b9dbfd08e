"""Errors of the service layer. Each carries the HTTP status it maps to, so the Python API
raises ordinary exceptions (``ValueError``/``LookupError`` subclasses) and the web app turns
them into 4xx answers without a table of special cases; anything else is a genuine 500."""

from __future__ import annotations

from typing import Any, Hashable, Sequence


class ServeError(Exception):
    status: int = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServeError, ValueError):
    """The request is well-formed JSON of the right types but cannot be answered as asked."""

    status = 422


class UnknownItems(ServeError, LookupError):
    """Item ids the catalogue (at the index version used) does not hold."""

    status = 422

    def __init__(self, ids: Sequence[Hashable], where: str,
                 hint: str = "; pass ignore_unknown=true to drop them instead"):
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:20]) + (" ..." if len(self.ids) > 20 else "")
        super().__init__(f"unknown item id(s) in {where}: {shown} ({len(self.ids)} in all){hint}")


class ItemNotFound(ServeError, LookupError):
    status = 404


class DuplicateItem(ServeError, ValueError):
    status = 409


class NotSupported(ServeError):
    """The method or the run cannot do this (e.g. TIGER cannot tokenise a new item)."""

    status = 501


def finite_or_none(value: Any) -> float | None:
    """JSON has no infinities: a log-probability of -inf is reported as null."""
    v = float(value)
    return v if v == v and abs(v) != float("inf") else None
