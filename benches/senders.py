"""The senders compared: how to start each on one dataset, and how to tell it succeeded.

Every sender is a separate process, so its wall time and peak RSS are its own. Success is what
the sender itself reports (exit code plus its own counts), never assumed from a clean exit.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import Finished

__all__ = [
    "BASELINE",
    "CARGO_BIN",
    "DICOM_RS",
    "DICOM_STORESCU",
    "PARALLEL_SENDERS",
    "SENDERS",
    "STORESCU",
    "TLS_SENDERS",
    "Data",
    "Sender",
    "exit_status",
    "sender_env",
]

STORESCU = "/usr/bin/storescu"
BASELINE = "storescu"
CARGO_BIN = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
DICOM_STORESCU = CARGO_BIN / "dicom-storescu"
"""The sender every ratio is taken against."""

_HERE = Path(__file__).resolve().parent
_FASTPUSH_COUNTS = re.compile(r"stored: (\d+), warning: (\d+), failed: (\d+), skipped: (\d+)")
_PYNETDICOM_COUNTS = re.compile(r"stored (\d+), failed (\d+)")


@dataclass(frozen=True)
class Data:
    """A dataset to push: a folder of files or one file."""

    name: str
    path: Path
    files: int
    bytes: int

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()


@dataclass(frozen=True)
class Sender:
    name: str
    command: Callable[[Data, str, int, str, Path | None], list[str]]
    """``command(data, host, port, called_ae, ca)``: the argv to run; with a ``ca`` (the TLS
    sink's certificate, PEM) it connects with TLS and verifies the sink against it."""
    verify: Callable[[Finished, int], str | None]
    """``verify(finished, expected_files)``: ``None`` if all were stored, else why not."""
    nodelay_env: bool = False
    """Whether to run it with ``TCP_NODELAY=1`` (DCMTK reads it; the others ignore it)."""


def sender_env(sender: Sender) -> dict[str, str]:
    """The sender's environment: ours, minus variables that would change what we measure."""
    env = {k: v for k, v in os.environ.items() if k not in ("TCP_NODELAY", "FASTPUSH_ENGINE")}
    if sender.nodelay_env:
        env["TCP_NODELAY"] = "1"
    return env


def _fastpush(
    engine: str, associations: int = 1
) -> Callable[[Data, str, int, str, Path | None], list[str]]:
    def command(data: Data, host: str, port: int, aet: str, ca: Path | None) -> list[str]:
        tls = [] if ca is None else ["--tls-ca", str(ca)]
        return [
            sys.executable,
            "-m",
            "fastpush",
            "store",
            host,
            str(port),
            str(data.path),
            "-aec",
            aet,
            "--engine",
            engine,
            "--associations",
            str(associations),
            *tls,
        ]

    return command


def _verify_fastpush(finished: Finished, expected: int) -> str | None:
    output = finished.output()
    counts = _FASTPUSH_COUNTS.search(output)
    if finished.returncode != 0 or counts is None:
        return f"exit {finished.returncode}: {_last_lines(output)}"
    stored, warning, failed, skipped = map(int, counts.groups())
    if stored + warning != expected:
        return f"stored {stored + warning} of {expected} (failed {failed}, skipped {skipped})"
    return None


def _pynetdicom(data: Data, host: str, port: int, aet: str, ca: Path | None) -> list[str]:
    return [sys.executable, str(_HERE / "pynetdicom_send.py"), host, str(port), aet, str(data.path)]


def _verify_pynetdicom(finished: Finished, expected: int) -> str | None:
    output = finished.output()
    counts = _PYNETDICOM_COUNTS.search(output)
    if finished.returncode != 0 or counts is None:
        return f"exit {finished.returncode}: {_last_lines(output)}"
    if int(counts.group(1)) != expected:
        return f"stored {counts.group(1)} of {expected}: {_last_lines(output)}"
    return None


def _storescu(data: Data, host: str, port: int, aet: str, ca: Path | None) -> list[str]:
    # +sd scans the folder itself: a thousand paths on argv would hit limits sooner or later.
    files = ["+sd", str(data.path)] if data.is_folder else [str(data.path)]
    # +tla: TLS without a client certificate (as fastpush); +cf: verify the sink against ca.
    tls = [] if ca is None else ["+tla", "+cf", str(ca)]
    return [STORESCU, "-aec", aet, *tls, host, str(port), *files]


def _verify_storescu(finished: Finished, expected: int) -> str | None:
    # storescu is silent on success; it halts with a non-zero exit and "E:" lines on a failed
    # store (no -nh), so both must be clean.
    output = finished.output()
    errors = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
    if finished.returncode != 0 or errors:
        return f"exit {finished.returncode}: {_last_lines(output)}"
    return None


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def exit_status(finished: Finished, expected: int) -> str | None:
    """Success as a sender that prints no counts tells it: its exit status."""
    return None if finished.returncode == 0 else f"exit {finished.returncode}"


def _dicom_storescu(data: Data, host: str, port: int, aet: str, ca: Path | None) -> list[str]:
    # It takes files, not folders; it reads each whole file into memory before sending it.
    files = sorted(map(str, data.path.iterdir())) if data.is_folder else [str(data.path)]
    return [str(DICOM_STORESCU), "--fail-first", f"{aet}@{host}:{port}", *files]


# dicom-rs (`cargo install dicom-storescu`); --fail-first: a non-zero exit unless every file was
# stored.
DICOM_RS = Sender("dicom-storescu", _dicom_storescu, exit_status)

SENDERS: dict[str, Sender] = {
    "fastpush-rust": Sender("fastpush-rust", _fastpush("rust"), _verify_fastpush),
    "fastpush-python": Sender("fastpush-python", _fastpush("python"), _verify_fastpush),
    "pynetdicom": Sender("pynetdicom", _pynetdicom, _verify_pynetdicom),
    # DCMTK with TCP_NODELAY=1 on its side too: its best mode, as the baseline was taken.
    BASELINE: Sender(BASELINE, _storescu, _verify_storescu, nodelay_env=True),
}
"""Senders by name, in table order."""

PARALLEL_SENDERS: dict[str, Sender] = {
    **{
        f"fastpush-rust-x{n}": Sender(f"fastpush-rust-x{n}", _fastpush("rust", n), _verify_fastpush)
        for n in (1, 2, 4, 8)
    },
    BASELINE: SENDERS[BASELINE],
}
"""fastpush with 1, 2, 4 and 8 associations, beside storescu's one (issue 3)."""

TLS_SENDERS: dict[str, Sender] = {
    name: SENDERS[name] for name in ("fastpush-rust", "fastpush-python", BASELINE)
}
"""The senders that speak DICOM TLS, into the TLS sink (issue 5); pynetdicom's is not wired."""
