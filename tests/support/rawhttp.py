"""Raw-socket HTTP for probes that a well-behaved client library refuses to send."""

from __future__ import annotations

import socket


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; return everything received until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    """Status code of the first response in a raw byte stream (0 when there is none)."""
    if not response.startswith(b"HTTP/1."):
        return 0
    return int(response.split(b" ", 2)[1])


def count_responses(response: bytes) -> int:
    return response.count(b"HTTP/1.1 ") + response.count(b"HTTP/1.0 ")


def read_head(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """For scripted upstreams: the next request head (without its blank line) and the bytes
    after it, reading from `sock` after what `buf` holds; None once the peer closes."""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        if not piece:
            return None
        buf += piece
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest
