"""The JSON Lines report of ``store --report`` / ``--resume``: writing it (one line per result,
flushed, so a crash loses nothing that already happened) and reading it back (what a resumed
run skips). ``stored_paths`` is public API (``fastpush.stored_paths``).

Loaded by ``import fastpush`` on first use of ``stored_paths``: no argparse, no rich here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from ..send.push import resolved
from ..send.results import Outcome, Result

_STORED = frozenset({Outcome.STORED.value, Outcome.WARNING.value})


class ReportError(ValueError):
    """A ``--resume`` report that is not a fastpush report: says which file and line."""


def write(report: IO[str], result: Result) -> None:
    """Append ``result``'s line to ``report``, its path resolved as ``Push(skip=...)`` matches."""
    import json  # here: a push without a report starts without it

    line = result.to_json()
    if result.path is not None:
        line["path"] = resolved(result.path)
    report.write(json.dumps(line) + "\n")
    report.flush()


def stored_paths(report: Path) -> tuple[set[str], int | None]:
    """The resolved paths a JSON Lines report shows as stored (or stored with a warning), and
    the byte offset where a last line cut short by a crash begins (None when there is none).

    The last line for a path wins. Raises ``ReportError`` naming the line when one is not a
    report line, and ``OSError`` when the file cannot be read.
    """
    import json

    outcomes: dict[str, str] = {}
    data = report.read_bytes()
    lines = data.split(b"\n")
    partial = None
    offset = 0
    known = {o.value for o in Outcome}
    for number, line in enumerate(lines, 1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:  # a JSONDecodeError, or bytes that are not UTF-8
            if number == len(lines):  # no newline after it: the run writing it was killed
                partial = start
                continue
            raise ReportError(
                f"{report} line {number}: not a fastpush report line ({exc})"
            ) from exc
        path = entry.get("path") if isinstance(entry, dict) else None
        outcome = entry.get("outcome") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or outcome not in known:
            raise ReportError(
                f"{report} line {number}: not a fastpush report line "
                '(wants an object with a "path" and an "outcome")'
            )
        outcomes[resolved(path)] = outcome
    return {path for path, outcome in outcomes.items() if outcome in _STORED}, partial


def resumed(path: Path) -> set[str] | None:
    """What ``--resume`` skips; None (after saying why) when the report cannot be trusted.
    A partial last line (a killed run) is dropped so that appending starts on a new line."""
    if not path.exists():
        _say(f"{path} does not exist yet: starting a fresh report")
        return set()
    try:
        stored, partial = stored_paths(path)
        if partial is not None:
            _say(
                f"{path}: dropping a partial last line (from a run that was killed); "
                "its file is sent again"
            )
            with path.open("r+b") as f:
                f.truncate(partial)
    except ReportError as exc:
        _say(f"cannot resume: {exc}; nothing was sent or appended")
        return None
    except OSError as exc:
        _say(f"cannot read the report {path}: {exc.strerror or exc}")
        return None
    return stored


def open_for(path: Path, *, resume: bool) -> IO[str] | None:
    """The report file, appended to when resuming; None (after saying why) when it cannot be
    written."""
    try:
        return path.open("a" if resume else "w", encoding="utf-8")
    except OSError as exc:
        _say(f"cannot write the report {path}: {exc.strerror or exc}")
        return None


def _say(message: str) -> None:
    print(f"fastpush: {message}", file=sys.stderr)
