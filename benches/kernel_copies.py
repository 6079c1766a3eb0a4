"""How many times bytes cross user space, and what each way costs (issue 17): a 0.5 MB file
forwarded over loopback TCP, and a 0.5 MB dataset received from loopback TCP into a spool file,
each done the way fastpush does it and the ways the kernel allows without a user-space copy.

Sending (the file mapped, the socket's peer discarding what it reads): ``mmap + sendmsg``
(fastpush's forwarding path: the kernel copies the mapped pages into the socket) against
``sendfile`` (the socket references the page-cache pages). Receiving into a file (``/dev/shm``,
as the router's spool in the benchmarks, or ``--dir``): ``recv + write`` (fastpush's receive
loop: into a buffer, then into the file) against ``splice`` socket → pipe → file (no user-space
buffer). Each way moves ``--files`` files in one process, CPU seconds (user + sys, both threads
of the pair) per GB and wall MB/s reported, the ways alternating over ``--rounds`` rounds,
medians.

    python benches/kernel_copies.py [--files 400] [--rounds 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SIZE = 512 * 1024
CHUNK = 64 * 1024
GB = 1e9


def _pair() -> tuple[socket.socket, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    server.close()
    for s in (client, peer):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, peer


def _drain(sock: socket.socket, total: int) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    left = total
    while left:
        n = sock.recv_into(view, min(CHUNK, left))
        if not n:
            raise ConnectionError("peer closed early")
        left -= n


def _feed(sock: socket.socket, total: int) -> None:
    block = os.urandom(CHUNK)
    left = total
    while left:
        n = min(CHUNK, left)
        sock.sendall(block[:n])
        left -= n


def send_mmap(path: Path, sock: socket.socket) -> None:
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        sock.sendall(mapped)


def send_sendfile(path: Path, sock: socket.socket) -> None:
    with path.open("rb") as file:
        offset = 0
        while offset < SIZE:
            offset += os.sendfile(sock.fileno(), file.fileno(), offset, SIZE - offset)


def recv_write(sock: socket.socket, path: Path) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = SIZE
        while left:
            n = sock.recv_into(view, min(CHUNK, left))
            os.write(fd, view[:n])
            left -= n
    finally:
        os.close(fd)


def recv_splice(sock: socket.socket, path: Path, pipe: tuple[int, int]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = SIZE
        while left:
            n = os.splice(sock.fileno(), pipe[1], min(CHUNK, left))
            moved = 0
            while moved < n:
                moved += os.splice(pipe[0], fd, n - moved)
            left -= n
    finally:
        os.close(fd)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], None]) -> tuple[float, float]:
    cpu, wall = _cpu(), time.perf_counter()
    run()
    return _cpu() - cpu, time.perf_counter() - wall


def _over_pair(
    work: Callable[[socket.socket], None], other: Callable[[socket.socket, int], None], total: int
) -> tuple[float, float]:
    """CPU and wall time of ``work`` on one end of a loopback pair while a thread runs
    ``other`` on the other end, for ``total`` bytes."""
    ours, theirs = _pair()
    helper = threading.Thread(target=other, args=(theirs, total))
    helper.start()

    def run() -> None:
        work(ours)
        helper.join()

    try:
        return _timed(run)
    finally:
        ours.close()
        theirs.close()


def sending(way: Callable[[Path, socket.socket], None], files: list[Path]) -> tuple[float, float]:
    def send_all(sock: socket.socket) -> None:
        for path in files:
            way(path, sock)

    return _over_pair(send_all, _drain, SIZE * len(files))


def receiving(splice: bool, files: list[Path]) -> tuple[float, float]:
    pipe = os.pipe()

    def receive_all(sock: socket.socket) -> None:
        for path in files:
            if splice:
                recv_splice(sock, path, pipe)
            else:
                recv_write(sock, path)
            path.unlink()

    try:
        return _over_pair(receive_all, _feed, SIZE * len(files))
    finally:
        for fd in pipe:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        root = Path(folder)
        sources = []
        for n in range(args.files):
            path = root / f"in-{n}"
            path.write_bytes(os.urandom(SIZE))
            sources.append(path)
        targets = [root / f"out-{n}" for n in range(args.files)]
        ways: dict[str, Callable[[], tuple[float, float]]] = {
            "send: mmap + sendmsg (fastpush)": lambda: sending(send_mmap, sources),
            "send: sendfile": lambda: sending(send_sendfile, sources),
            "receive: recv + write (fastpush)": lambda: receiving(False, targets),
            "receive: splice socket -> pipe -> file": lambda: receiving(True, targets),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                results[name].append(way())
    gigabytes = SIZE * args.files / GB
    print(f"{args.files} x {SIZE // 1024} KiB, medians of {args.rounds} rounds, in {args.dir}")
    print(f"load average {os.getloadavg()[0]:.2f}\n")
    print("| way | CPU s/GB (user+sys, both ends) | MB/s |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        cpu = statistics.median(c for c, _ in runs) / gigabytes
        rate = gigabytes * 1000 / statistics.median(w for _, w in runs)
        print(f"| {name} | {cpu:.2f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
