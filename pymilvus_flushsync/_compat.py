"""What differs between pymilvus versions, in one place."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import re
from typing import Any

import pymilvus
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

__all__ = [
    "BROADCAST_FIELDS",
    "GRPC_MAX_TIMEOUT",
    "OWN_CONNECTION",
    "async_handler",
    "async_stub",
    "check_lite",
    "current_db_name",
    "endpoint",
    "release_lite",
    "session_reads_at",
]

#: Whether this pymilvus's protos carry Milvus 2.6.8's FlushAll fields
#: (``flush_all_msgs``, ``flush_all_tss``): pymilvus 3.0 and 2.6.17 do, 2.5.18 does not.
BROADCAST_FIELDS = (
    "flush_all_msgs" in milvus_pb2.FlushAllResponse.DESCRIPTOR.fields_by_name
    and "flush_all_tss" in milvus_pb2.GetFlushAllStateRequest.DESCRIPTOR.fields_by_name
)

#: The longest timeout a gRPC call takes: its C core holds a deadline as int64
#: nanoseconds since the epoch, so ``now + 1e10`` s wraps into the past and the call
#: fails at once with DEADLINE_EXCEEDED (measured: 1e10 fails, 1e9 works).
GRPC_MAX_TIMEOUT = 1e9


def _own_connection() -> dict[str, Any]:
    try:
        from pymilvus.client.connection_manager import ConnectionManager
    except ImportError:  # pymilvus 2.5: a closed client closes its own connection
        return {}
    takes = inspect.signature(ConnectionManager.get_or_create).parameters
    return {"dedicated": True} if "dedicated" in takes else {}


#: What gives a ``MilvusClient`` a connection of its own, closed by ``close()``, for
#: the command line's clients. pymilvus 2.6+ shares one per address and token for
#: the life of the process (its ``ConnectionManager``; ``close()`` only forgets the
#: client). A channel still open as the interpreter exits is closed by its finaliser,
#: which waits for the gRPC threads that watch it: a watch of the connection lasts up
#: to 0.2 s after connecting, and a thread that wakes during exit never returns, so a
#: Ctrl-C that soon after connecting hung the command (5 in 120 on a loaded machine).
OWN_CONNECTION = _own_connection()


def current_db_name(client: Any) -> str:
    """The client's current database; ``""`` for the server's default.

    pymilvus 2.6+ keeps it in ``client._config.db_name`` (and sends it as ``dbname``
    metadata per request). 2.5 keeps it only in its handler: the async handler's
    ``_db_name``, or the sync handler's channel interceptor that adds ``dbname``.
    """
    config = getattr(client, "_config", None)
    if config is not None:
        return str(getattr(config, "db_name", "") or "")
    return _handler_db_name(client._get_connection())


def _handler_db_name(handler: Any) -> str:
    """pymilvus 2.5: the database a handler's requests go to."""
    name = getattr(handler, "_db_name", None)
    if isinstance(name, str):
        return name
    add_headers = getattr(getattr(handler, "_db_interceptor", None), "_fn", None)
    cells = [cell.cell_contents for cell in getattr(add_headers, "__closure__", None) or ()]
    # header_adder_interceptor(headers, values) closes over both lists; a layout
    # other than that one means "unknown": the server's default database.
    for keys in cells:
        if keys == ["dbname"]:
            values = [c for c in cells if c is not keys and isinstance(c, list) and c]
            return str(values[0][0] or "") if values else ""
    return ""


def endpoint(client: Any) -> str:
    """The client's server address (``host:port``), known before it connects."""
    config = getattr(client, "_config", None)
    return str(getattr(config, "address", "") or getattr(client, "_using", "") or "")


def check_lite(client: Any) -> None:
    """Refuse, in one line, a Milvus Lite client whose milvus-lite cannot serve this
    pymilvus: milvus-lite 3 serves pymilvus 2.6+'s protos only, and pymilvus 2.5 asks
    just for ``milvus-lite>=2.4``, so pip pairs them (the demo's Flush works; listing
    fails: ``ShowCollectionsResponse has no "shards_num" field``). pymilvus 2.5 keeps a
    Lite client's ``.db`` path in ``_using``; 2.6+ is never refused."""
    wanted = _lite_mismatch()
    if wanted and str(getattr(client, "_using", "")).endswith(".db"):
        raise MilvusException(message=wanted)


@functools.cache
def _lite_mismatch() -> str:
    """What to install when this pymilvus and the installed milvus-lite do not pair;
    ``""`` when they do (or milvus-lite is absent)."""
    try:
        lite = importlib.metadata.version("milvus-lite")
    except importlib.metadata.PackageNotFoundError:
        return ""
    if _major_minor(pymilvus.__version__) >= (2, 6) or _major_minor(lite) < (3, 0):
        return ""
    return (
        f"milvus-lite {lite} serves pymilvus 2.6+ only, and this is pymilvus "
        f'{pymilvus.__version__}: pip install "milvus-lite>=2.4,<3" "setuptools<81" '
        '(or "pymilvus>=2.6")'
    )


def _major_minor(version: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def release_lite(uri: str) -> None:
    """Stop this process's Milvus Lite server for ``uri`` (a ``.db`` path), if it runs.

    ``client.close()`` leaves Lite's in-process server, its background index
    builds and its file lock running until the process exits; releasing it
    waits for that work and frees the lock. A no-op for any other URI, and
    where milvus-lite has no ``server_manager`` of this shape.
    """
    if not uri.endswith(".db"):
        return
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    release = getattr(server_manager_instance, "release_server", None)
    if release is not None:
        release(uri)


async def async_handler(client: Any) -> Any:
    """The async client's connected handler, whose ``_async_stub`` is ready.

    pymilvus 2.6+ has ``async _get_connection()``; 2.5's is a plain method. Both
    handlers finish connecting lazily in ``ensure_channel_ready()`` (a no-op once done).
    """
    handler = await _async_connection(client)
    ready = getattr(handler, "ensure_channel_ready", None)
    if ready is not None:
        await ready()
    return handler


async def async_stub(client: Any) -> Any:
    """The connected async client's ``grpc.aio`` stub; raises once it was closed."""
    return (await _async_connection(client))._async_stub


async def _async_connection(client: Any) -> Any:
    """``client._get_connection()``: a coroutine in pymilvus 2.6+, a plain call in 2.5."""
    handler = client._get_connection()
    return await handler if inspect.isawaitable(handler) else handler


def write_timestamps(names: tuple[str, ...], db_name: str) -> dict[str, int]:
    """The last write timestamp this process saw per collection (pymilvus keeps it for
    Session consistency, on every insert, upsert and delete), for those it has one.
    pymilvus 2.6+ keys it by endpoint, database and name: the latest of any endpoint
    is taken (one server may be reached by several addresses); 2.5 keys it by name."""
    from pymilvus.client import ts_utils

    cache = getattr(getattr(ts_utils, "GlobalCache", None), "collection_ts", None)
    entries = getattr(cache, "_cache", None)
    found: dict[str, int] = {}
    if entries is not None:
        db = db_name or "default"
        with getattr(cache, "_lock", contextlib.nullcontext()):  # writers hold it too
            cached = list(entries.items())
        for (_, key_db, name), ts in cached:
            if name in names and key_db == db and ts:
                found[name] = max(found.get(name, 0), int(ts))
        return found
    for name in names:
        ts = ts_utils.get_collection_ts(name)
        if ts:
            found[name] = int(ts)
    return found


def session_reads_at(address: str, db_name: str, timestamps: dict[str, int]) -> None:
    """From now on, this process's Session reads of each collection through a client of
    ``address`` (its handler's ``server_address``) and ``db_name`` are guaranteed at
    least its timestamp: pymilvus's per-collection last write timestamp, raised, never
    lowered (pymilvus keeps the greater). pymilvus 2.6+ keys it by endpoint, database
    and name, the database as the client's call context names it (``""`` for the
    default unless the client named it): the default database is set under both
    spellings; 2.5 keys it by name alone, for the whole process."""
    from pymilvus.client import ts_utils

    if getattr(ts_utils, "GlobalCache", None) is None:  # pymilvus 2.5
        for name, ts in timestamps.items():
            ts_utils.update_collection_ts(name, ts)
        return
    dbs = ("", "default") if db_name in ("", "default") else (db_name,)
    for db in dbs:
        for name, ts in timestamps.items():
            ts_utils.update_collection_ts(name, ts, address, db)
