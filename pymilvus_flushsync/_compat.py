"""What differs between pymilvus versions, in one place."""

from __future__ import annotations

from typing import Any

__all__ = ["current_db_name", "endpoint"]


def current_db_name(client: Any) -> str:
    """The client's current database; ``""`` for the server's default.

    pymilvus 2.6+ keeps it in ``client._config.db_name`` and sends it as ``dbname``
    metadata per request.
    """
    config = getattr(client, "_config", None)
    return str(getattr(config, "db_name", "") or "")


def endpoint(client: Any) -> str:
    """The client's server address (``host:port``), known before it connects."""
    config = getattr(client, "_config", None)
    return str(getattr(config, "address", "") or getattr(client, "_using", "") or "")
