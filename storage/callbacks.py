"""Listener lists the backends call after a commit (shared by every backend)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

log = logging.getLogger(__name__)

P = ParamSpec("P")


class Callbacks(Generic[P]):
    """Callables told about a committed change, in the order they were added.

    One that raises is logged and does not keep the others from being called.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._fns: list[Callable[P, None]] = []

    def add(self, fn: Callable[P, None]) -> None:
        self._fns.append(fn)

    def remove(self, fn: Callable[P, None]) -> None:
        if fn in self._fns:
            self._fns.remove(fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for fn in list(self._fns):
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("%s listener failed", self._what)
