"""A raw-socket HTTP server on 127.0.0.1 that answers each request with a scripted hostile behaviour."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Behaviour = Callable[[socket.socket, str], None]


def _request_path(conn: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    return parts[1] if len(parts) > 1 else "/"


@contextmanager
def hostile_server(behaviour: Behaviour) -> Iterator[str]:
    """Serve ``behaviour(conn, path)`` for every connection; yields the base URL ``http://127.0.0.1:PORT``."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        try:
            behaviour(conn, _request_path(conn))
        except OSError:
            pass
        finally:
            conn.close()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def short_body(conn: socket.socket, path: str) -> None:
    """Declares 1000 bytes, sends 100, closes."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n")
    conn.sendall(b"x" * 100)


def trickle(conn: socket.socket, path: str) -> None:
    """Declares 100 bytes and sends one every 0.5 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        time.sleep(0.5)
        conn.sendall(b"x")


def slow_headers(conn: socket.socket, path: str) -> None:
    """Sends a header line one byte every 0.5 s, forever (slowloris)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(200):
        time.sleep(0.5)
        conn.sendall(b"X")


def bad_status(conn: socket.socket, path: str) -> None:
    conn.sendall(b"GARBAGE\r\n\r\n")


def many_headers(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n")


def long_header(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")


def redirect_to(target: str) -> Behaviour:
    def behaviour(conn: socket.socket, path: str) -> None:
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n".encode())

    return behaviour
