"""A small TCP proxy for tests: forwards to a server until told to stall.

Stalled, it keeps every connection open and reads what arrives, but forwards
nothing, like a hung server or a silently broken network path.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from concurrent import futures
from typing import Any

import grpc


def grpc_server(handlers: Any, workers: int = 8) -> tuple[grpc.Server, int]:
    """A started gRPC server on 127.0.0.1 (a free port) with these generic handlers."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers(handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


class TcpServer:
    """A TCP listener on 127.0.0.1 (a free port, unless ``port`` is given) that hands
    each connection to ``serve`` on a thread of its own; ``close()`` ends every connection."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def keep(self, *sockets: socket.socket) -> None:
        """Close these too on ``close()``."""
        with self._lock:
            self._sockets += sockets

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class StallingProxy(TcpServer):
    """Forwards ``port`` (a free one by default) to the target until ``stall()``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self._target = (target_host, target_port)
        self.stalled = threading.Event()
        super().__init__(port)

    def stall(self) -> None:
        self.stalled.set()

    def serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(conn, upstream)
        threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
        self._pump(conn, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.stalled.is_set():
                continue  # swallow: the peer sees an open connection and silence
            try:
                dst.sendall(data)
            except OSError:
                return
