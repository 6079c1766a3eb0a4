"""Helpers for the router tests: DCMTK storescu as the sender, what arrived at a destination,
the router as a user runs it (``python -m fastpush route``) and its journal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from support.peers import STORESCU, dataset_bytes, stop_process, wait_for_port


def storescu(
    port: int, files: Iterable[Path], log: Path, aec: str = "ROUTER", *options: str
) -> subprocess.Popen[bytes]:
    """Start ``storescu -v`` (and ``options``) sending ``files`` to 127.0.0.1:port, its story
    in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                STORESCU,
                "-v",
                "-nh",
                *options,
                "-aec",
                aec,
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def acknowledged(log: Path) -> list[Path]:
    """The files storescu's ``-v`` story says were answered Success, in order."""
    done: list[Path] = []
    current: Path | None = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("I: Sending file: "):
            current = Path(line.removeprefix("I: Sending file: "))
        elif line.startswith("I: Received Store Response (Success)") and current is not None:
            done.append(current)
            current = None
    return done


def send_all(port: int, files: list[Path], log: Path, timeout: float = 120) -> None:
    """storescu sends ``files``; every one must be acknowledged."""
    proc = storescu(port, files, log)
    proc.wait(timeout=timeout)
    assert {p.resolve() for p in acknowledged(log)} == {p.resolve() for p in files}, log.read_text()


def arrived(folder: Path) -> dict[str, list[Path]]:
    """SOP Instance UID -> the files holding it under ``folder`` (any layout, any names)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            found.setdefault(uid, []).append(path)
    return found


def uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_byte_exact(sources: Iterable[Path], found: dict[str, list[Path]]) -> None:
    """Each source arrived, every copy with the source's dataset bytes."""
    for source in sources:
        copies = found.get(uid_of(source), [])
        assert copies, f"{source} did not arrive"
        for copy in copies:
            assert dataset_bytes(copy) == dataset_bytes(source), f"{copy} differs from {source}"


def journal(spool: Path) -> list[dict[str, Any]]:
    """The router's journal (a line cut by a kill is dropped)."""
    lines = []
    for line in (spool / "journal.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def unexplained_duplicates(found: dict[str, list[Path]], spool: Path) -> list[str]:
    """UIDs that arrived more than once without the journal saying they might: neither marked
    maybe_duplicate nor received twice (a sender's response lost in flight), nor recovered from
    a queue entry whose "received" line the kill cut (its sender never heard success)."""
    events = journal(spool)
    maybe = {e["sop_instance_uid"] for e in events if e["maybe_duplicate"]}
    received = Counter(e["sop_instance_uid"] for e in events if e["step"] == "received")
    journaled = {e["path"] for e in events if e["step"] == "received"}
    # A recovered event names the file, not the UID: its queue path holds the UID.
    unannounced = [
        e["path"] for e in events if e["step"] == "recovered" and e["path"] not in journaled
    ]
    return [
        uid
        for uid, copies in found.items()
        if len(copies) > 1
        and uid not in maybe
        and received[uid] < 2
        and not any(uid in path for path in unannounced)
    ]


@dataclass
class RouteProcess:
    """``python -m fastpush route`` in a subprocess."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def start_route(port: int, *args: str, log: Path) -> RouteProcess:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastpush", "route", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    wait_for_port(port, proc=proc)
    return RouteProcess(port, proc, log)


def wait_drained(spool: Path, route: RouteProcess, timeout: float = 120) -> None:
    """Until no queue entry is left in ``spool`` (a router in another process gives no event
    to wait on: the queue folders are looked at, bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while [p for p in (spool / "queue").rglob("*") if p.is_file()]:
        assert time.monotonic() < deadline, route.text()
        time.sleep(0.1)
