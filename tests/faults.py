"""Misbehaving peers on loopback for fault tests: a black hole and a slow proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from .servers import free_port

__all__ = ["black_hole", "slow_proxy"]


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers; yields the port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                accepted.append(conn)  # held open, never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


@contextlib.contextmanager
def slow_proxy(target_port: int, delay: float) -> Iterator[int]:
    """A loopback proxy to ``target_port`` that holds every reply for ``delay`` seconds."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket, hold: float) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if hold:
                    time.sleep(hold)
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            sockets.extend((client, upstream))
            threading.Thread(target=pipe, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, delay), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        listener.close()
