"""docs/engines.md's recipes for LangChain's and LlamaIndex's Milvus stores, as the tests
run them: an ingestion worker writes through its store and hands on the ticket of
``flush_sync(until="visible")``; a query service, in another process with a store of
its own, waits on the ticket and searches. Both stores create their collections at
Session consistency (their default), so their searches read at the ticket.

``langchain-milvus`` needs pymilvus 3 from 0.4 (0.3 pymilvus 2.x);
``llama-index-vector-stores-milvus`` 1.2 needs pymilvus 2.6 (below 3): CI runs each
where it installs (``.ci/run``)."""

from __future__ import annotations

from typing import Any

from pymilvus_flushsync import FlushTicket, wrap

DIM = 8


def langchain_store(uri: str, name: str) -> Any:
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_milvus import Milvus

    embeddings = DeterministicFakeEmbedding(size=DIM)  # any Embeddings
    return Milvus(embeddings, collection_name=name, connection_args={"uri": uri}, auto_id=True)


def langchain_write(uri: str, name: str, texts: list[str]) -> str:
    """The ingestion worker: write, then hand on the ticket's JSON."""
    store = langchain_store(uri, name)
    store.add_texts(texts)
    ticket = wrap(store.client).flush_sync(name, until="visible", timeout=30).ticket
    return str(ticket.to_json())


def langchain_read(uri: str, name: str, text: str, query: str, k: int) -> list[str]:
    """The query service: wait on the ticket, then search as it always does."""
    store = langchain_store(uri, name)
    wrap(store.client).wait_flushed(FlushTicket.from_json(text), until="visible", timeout=30)
    return [doc.page_content for doc in store.similarity_search(query, k=k)]


def llamaindex_store(uri: str, name: str) -> Any:
    from llama_index.vector_stores.milvus import MilvusVectorStore

    return MilvusVectorStore(uri=uri, collection_name=name, dim=DIM)


def _embedding(text: str) -> list[float]:
    """A stand-in for an embedding model: one vector per text, always the same."""
    seed = sum(map(ord, text))
    return [((seed * (i + 7)) % 97) / 97.0 for i in range(DIM)]


def llamaindex_write(uri: str, name: str, texts: list[str]) -> str:
    """The ingestion worker: write, then hand on the ticket's JSON."""
    from llama_index.core.schema import TextNode

    store = llamaindex_store(uri, name)
    store.add([TextNode(text=text, embedding=_embedding(text)) for text in texts])
    ticket = wrap(store.client).flush_sync(name, until="visible", timeout=30).ticket
    return str(ticket.to_json())


def llamaindex_read(uri: str, name: str, text: str, query: str, k: int) -> list[str]:
    """The query service: wait on the ticket, then query as it always does."""
    from llama_index.core.vector_stores import VectorStoreQuery

    store = llamaindex_store(uri, name)
    wrap(store.client).wait_flushed(FlushTicket.from_json(text), until="visible", timeout=30)
    found = store.query(VectorStoreQuery(query_embedding=_embedding(query), similarity_top_k=k))
    return [node.get_content() for node in found.nodes or []]
