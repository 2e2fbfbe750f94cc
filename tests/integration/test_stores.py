"""docs/engines.md's recipes for LangChain's and LlamaIndex's Milvus stores
(``tests/stores.py``): an ingestion worker writes through its store and hands on the
ticket of ``flush_sync(until="visible")``, with no Flush; a query service with a store
of its own waits on the ticket and finds every text at once. On the real server the
query service is another process; on Milvus Lite (one process holds a Lite file) the
same process. Each store's test runs where its package installs (``tests/stores.py``)."""

from __future__ import annotations

import pytest

from .. import stores
from ..helpers import Backend, unique
from ..processes import returned_elsewhere

TEXTS = [f"note {i}: the rows a reader must see" for i in range(12)]
KINDS = {
    "langchain": ("langchain_milvus", stores.langchain_write, stores.langchain_read),
    "llamaindex": ("llama_index.vector_stores.milvus", stores.llamaindex_write,
                   stores.llamaindex_read),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_query_service_sees_what_the_ingestion_worker_wrote(kind: str, backend: Backend) -> None:
    module, write, read = KINDS[kind]
    pytest.importorskip(module, reason=f"{kind}'s Milvus store is not installed here")
    name = unique("store")
    backend.created.append(("", name))  # the store creates it; dropped after the test
    text = write(backend.uri, name, TEXTS)
    args = (backend.uri, name, text, TEXTS[0], len(TEXTS))
    found = read(*args) if backend.kind == "lite" else returned_elsewhere(read, *args)
    assert sorted(found) == sorted(TEXTS)  # every text, at once, without a Flush
