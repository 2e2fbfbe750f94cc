"""``flush_sync`` on clients this package did not build: ``wrap`` one, or ``patch`` pymilvus.

``wrap(client)`` returns a ``wrapt.ObjectProxy`` that adds the mixin's methods
(``flush_sync``, ``flush_all_sync``, ``start_flush``, ``wait_flushed``) and its
``flush_sync_policy``, and forwards everything else (``isinstance(proxy,
pymilvus.MilvusClient)`` holds; the client itself is not modified). ``patch()`` adds
the same, every public attribute of the mixins, to ``pymilvus.MilvusClient`` and
``pymilvus.AsyncMilvusClient`` so that clients made
anywhere have it, the way OpenTelemetry instrumentations patch client libraries:
idempotent, deferred until pymilvus is imported (``wrapt.when_imported``), and
undone exactly by ``unpatch()``: the attributes it added are deleted, and only
while they are still the ones it added (as OpenTelemetry's ``unwrap`` checks).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["patch", "unpatch", "wrap"]


def wrap(client: Any) -> Any:
    """A proxy of ``client`` that adds ``flush_sync`` (async for an async client).

    Args:
        client: a ``pymilvus.MilvusClient`` or ``pymilvus.AsyncMilvusClient``
            (or a subclass) that someone else made.

    Returns:
        A ``wrapt.ObjectProxy`` that forwards every other attribute to ``client``.
    """
    import pymilvus

    from ._proxy import AsyncClientProxy, SyncClientProxy

    if isinstance(client, pymilvus.AsyncMilvusClient):
        return AsyncClientProxy(client)
    if isinstance(client, pymilvus.MilvusClient):
        return SyncClientProxy(client)
    raise TypeError(f"wrap() takes a pymilvus MilvusClient or AsyncMilvusClient, got {client!r}")


class _State:
    lock = threading.RLock()  # wrapt runs the import hook at once if pymilvus is loaded
    wanted = False  # patch() was called and unpatch() was not
    hooked = False  # the import hook is registered (it cannot be removed)


def patch() -> None:
    """Add ``flush_sync`` to pymilvus's clients, now or when pymilvus is imported.

    Idempotent: a second call does nothing.
    """
    import wrapt  # here, not at import: ``import pymilvus_flushsync`` stays light (the CLI)

    with _State.lock:
        _State.wanted = True
        if not _State.hooked:
            _State.hooked = True
            wrapt.when_imported("pymilvus")(_on_import)
        module = sys.modules.get("pymilvus")
    if module is not None:
        _apply(module)


def unpatch() -> None:
    """Remove what ``patch`` added; pymilvus is exactly as before. Idempotent."""
    with _State.lock:
        _State.wanted = False
        module = sys.modules.get("pymilvus")
        if module is None:
            return
        for cls, mixin in _targets(module):
            for name in _added(mixin):
                # only what patch() added: were pymilvus to ship its own, it stays
                if name in vars(cls) and vars(cls)[name] is vars(mixin)[name]:
                    delattr(cls, name)


def _on_import(module: ModuleType) -> None:
    if _State.wanted:
        _apply(module)


def _apply(module: ModuleType) -> None:
    with _State.lock:
        if not _State.wanted:
            return
        for cls, mixin in _targets(module):
            for name in _added(mixin):
                if name not in vars(cls):
                    setattr(cls, name, vars(mixin)[name])


def _targets(module: ModuleType) -> list[tuple[type, type]]:
    from ._clients import AsyncFlushSyncMixin, FlushSyncMixin  # they import pymilvus

    return [
        (module.MilvusClient, FlushSyncMixin),
        (module.AsyncMilvusClient, AsyncFlushSyncMixin),
    ]


def _added(mixin: type) -> list[str]:
    """What ``patch`` adds: every public attribute of ``mixin``, as ``wrap`` has."""
    return [name for name in vars(mixin) if not name.startswith("_")]
