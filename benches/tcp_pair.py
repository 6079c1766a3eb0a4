"""The physical limit: raw bytes over loopback TCP, no DICOM.

``python tcp_pair.py sink PORT`` reads until the peer closes, into one 4 MiB buffer (as the
fastpush receiver does); ``python tcp_pair.py send PORT FILE`` sends the memory-mapped file in
4 MiB ``send`` calls (what fastpush's ``sendmsg`` batches do; ``sendfile`` was measured slower
on loopback) and waits for the sink's one-byte acknowledgement, so it ends once every byte was
read.
"""

from __future__ import annotations

import mmap
import os
import socket
import sys


def sink(port: int) -> None:
    buffer = bytearray(4 << 20)
    with socket.create_server(("127.0.0.1", port)) as listener:
        while True:
            conn, _ = listener.accept()
            with conn:
                while conn.recv_into(buffer):
                    pass
                conn.sendall(b"k")


def send(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn, open(path, "rb") as f:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            for start in range(0, len(view), 4 << 20):
                conn.sendall(view[start : start + (4 << 20)])
            view.release()
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
    print(f"sent {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    if sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    else:
        send(int(sys.argv[2]), sys.argv[3])
