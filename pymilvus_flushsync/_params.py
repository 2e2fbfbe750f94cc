"""Argument checks for ``flush_sync``: normalise once, raise ``ParamError`` before any RPC."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, cast

from pymilvus.exceptions import ParamError

from ._stages import STAGES

__all__ = [
    "UNTIL",
    "Until",
    "check_db_name",
    "check_hook",
    "check_names",
    "check_timeout",
    "check_until",
]

#: What a call waits for, for type checkers: the names of ``_stages.STAGES``, where
#: each stage is defined (docs/guarantees.md, "Beyond persisted").
Until = Literal["visible", "persisted", "indexed", "loaded"]
#: The stages' names, in order.
UNTIL = tuple(stage.name for stage in STAGES)


def check_names(collection_names: Any) -> tuple[str, ...]:
    """A string or a list/tuple of non-empty strings -> a tuple without duplicates, order kept."""
    if isinstance(collection_names, str):
        collection_names = [collection_names]
    if not isinstance(collection_names, (list, tuple)) or not collection_names:
        raise ParamError(
            message="collection_names must be a non-empty list or tuple of collection names "
            f"(or one name as a string), got {collection_names!r}"
        )
    names: Sequence[Any] = collection_names
    for name in names:
        if not isinstance(name, str) or not name:
            raise ParamError(
                message=f"every collection name must be a non-empty string, got {name!r}"
            )
        try:
            name.encode("utf-8")  # a lone surrogate (an undecodable byte from argv) is not
        except UnicodeEncodeError:
            raise ParamError(message=f"collection name {name!r} is not valid text") from None
    return tuple(dict.fromkeys(names))


def check_timeout(timeout: Any) -> float | None:
    """``None`` (no deadline) or a positive, finite real number of seconds (any
    ``numbers.Real`` but ``bool``: ``int``, ``float``, numpy's, ``Fraction``)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise ParamError(message=f"timeout must be a number of seconds or None, got {timeout!r}")
    try:
        seconds = float(timeout)
    except (OverflowError, ValueError, TypeError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ParamError(message=f"timeout must be a positive, finite number, got {timeout!r}")
    return seconds


def check_db_name(db_name: Any) -> str | None:
    """``None`` (the client's current database) or a database name that gRPC can send:
    it goes in the ``dbname`` metadata, whose values must be printable ASCII."""
    if db_name is not None and not isinstance(db_name, str):
        raise ParamError(message=f"db_name must be a string or None, got {db_name!r}")
    if db_name and not (db_name.isascii() and db_name.isprintable()):
        raise ParamError(
            message=f"db_name must be printable ASCII (gRPC metadata), got {db_name!r}"
        )
    return db_name


def check_hook(on_progress: Any) -> None:
    """``on_progress`` is ``None`` or callable."""
    if on_progress is not None and not callable(on_progress):
        raise ParamError(message=f"on_progress must be callable or None, got {on_progress!r}")


def check_until(until: Any) -> Until:
    """One of ``UNTIL``."""
    if isinstance(until, str) and until in UNTIL:
        return cast(Until, until)
    raise ParamError(message=f"until must be one of {', '.join(UNTIL)}, got {until!r}")
