"""The physical limit: raw bytes over loopback TCP, no DICOM.

``python tcp_pair.py sink PORT`` reads until the peer closes, into one 4 MiB buffer (as the
fastpush receiver does); ``python tcp_pair.py send PORT FILE`` sends the file with ``sendfile``
and waits for the sink's one-byte acknowledgement, so it ends once every byte was read.
"""

from __future__ import annotations

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
        conn.sendfile(f)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
    print(f"sent {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    if sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    else:
        send(int(sys.argv[2]), sys.argv[3])
