"""What one run measured, the markdown table of all runs, and the issue's targets met or missed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from senders import BASELINE

__all__ = ["Run", "markdown_table", "parallel_targets_table", "targets_table", "tls_targets_table"]

RUST, PYTHON = "fastpush-rust", "fastpush-python"
STUDY, BIG = "study", "big"


class Rates:
    """MB/s and files/s of a run that moved ``files`` files of ``bytes`` in ``seconds``."""

    files: int
    bytes: int
    seconds: float

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def files_s(self) -> float:
        return self.files / self.seconds


@dataclass(frozen=True)
class Run:
    """One sender pushing one dataset into one fresh sink."""

    sender: str
    sink: str
    dataset: str
    files: int
    bytes: int
    seconds: float
    peak_rss_kib: int
    status: str
    """``ok``, ``FAILED`` or ``TIMEOUT``."""
    reason: str | None = None
    samples: tuple[float, ...] = ()
    """Seconds of every repetition; ``seconds`` is their median."""
    cpu_seconds: float = 0.0
    """The sender's user + system CPU seconds (GNU time's ``wait4``)."""
    sink_cpu_seconds: float = 0.0
    """The sink's user + system CPU seconds over its life (our ``wait4``), start-up included."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    @property
    def mb_per_s(self) -> float:
        return self.mb / self.seconds

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu_seconds / (self.bytes / 1e9)

    @property
    def sink_cpu_per_gb(self) -> float:
        return self.sink_cpu_seconds / (self.bytes / 1e9)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib * 1024 / 1e6

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        if self.ok:
            raw |= {"mb_per_s": self.mb_per_s, "files_per_s": self.files_per_s}
        return raw


def _find(runs: Sequence[Run], sender: str, sink: str, dataset: str) -> Run | None:
    for run in runs:
        if (run.sender, run.sink, run.dataset) == (sender, sink, dataset) and run.ok:
            return run
    return None


def _ratio(runs: Sequence[Run], run: Run, metric: Callable[[Run], float]) -> float | None:
    """``run``'s metric over DCMTK storescu's on the same sink and dataset (``None``: no base)."""
    base = _find(runs, BASELINE, run.sink, run.dataset)
    if base is None or not run.ok:
        return None
    return metric(run) / metric(base)


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{suffix}"


def markdown_table(runs: Sequence[Run]) -> str:
    """The table of every run; failed runs show their status and a numbered note, no numbers."""
    head = (
        "| sender | sink | dataset | files | MB | runs | s | MB/s | files/s | peak RSS MB "
        "| sender CPU s/GB | sink CPU s/GB | x DCMTK files/s | x DCMTK MB/s |"
    )
    lines = [head, "|" + "---|" * 3 + "---:|" * 11]
    notes: list[str] = []
    for run in runs:
        where = (
            f"| {run.sender} | {run.sink} | {run.dataset} | {run.files} | {run.mb:,.1f} "
            f"| {len(run.samples)} "
        )
        if not run.ok:
            notes.append(f"{run.status} after {run.seconds:.1f} s: {run.reason}")
            mark = f"**{run.status}** [{len(notes)}]"
            lines.append(where + f"| {mark} | — | — | — | — | — | — | — |")
            continue
        by_files = _ratio(runs, run, lambda r: r.files_per_s)
        by_mb = _ratio(runs, run, lambda r: r.mb_per_s)
        lines.append(
            where + f"| {run.seconds:.2f} | {run.mb_per_s:,.1f} | {run.files_per_s:,.1f} "
            f"| {run.peak_rss_mb:,.1f} | {run.cpu_per_gb:.2f} | {run.sink_cpu_per_gb:.2f} "
            f"| {_fmt(by_files, 2, 'x')} | {_fmt(by_mb, 2, 'x')} |"
        )
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, start=1))
    return "\n".join(lines)


@dataclass(frozen=True)
class _Verdict:
    target: str
    measured: str
    met: bool | None
    """``None``: not measured in this run (selected out, or a run failed)."""


def _ratio_target(
    runs: Sequence[Run],
    sink: str,
    dataset: str,
    metric: str,
    goal: float,
    text: str,
    sender: str = RUST,
) -> _Verdict:
    rust, base = _find(runs, sender, sink, dataset), _find(runs, BASELINE, sink, dataset)
    if rust is None or base is None:
        return _Verdict(text, "not measured (a run failed or was not selected)", None)
    ratio = getattr(rust, metric) / getattr(base, metric)
    unit = "MB/s" if metric == "mb_per_s" else "files/s"
    measured = f"{ratio:.2f}x ({getattr(rust, metric):,.1f} vs {getattr(base, metric):,.1f} {unit})"
    return _Verdict(text, measured, ratio >= goal)


def _rss_target(runs: Sequence[Run], limit_mb: float, big_label: str) -> _Verdict:
    text = f"{big_label} file: fastpush-rust peak RSS < {limit_mb:.0f} MB"
    rust = _find(runs, RUST, "storescp-nodelay", BIG)
    if rust is None:
        return _Verdict(text, "not measured", None)
    return _Verdict(text, f"{rust.peak_rss_mb:,.1f} MB", rust.peak_rss_mb < limit_mb)


def _rust_ahead(runs: Sequence[Run]) -> _Verdict:
    """Rust at least as fast as Python on every sink and dataset both completed."""
    text = "fastpush-rust ahead of fastpush-python (MB/s, every sink and dataset)"
    pairs = []
    for rust in (r for r in runs if r.sender == RUST and r.ok):
        python = _find(runs, PYTHON, rust.sink, rust.dataset)
        if python is not None:
            pairs.append((rust, python))
    if not pairs:
        return _Verdict(text, "not measured", None)
    behind = [
        f"{r.sink}/{r.dataset} {r.mb_per_s / p.mb_per_s:.2f}x"
        for r, p in pairs
        if r.mb_per_s < p.mb_per_s
    ]
    ratios = ", ".join(f"{r.sink}/{r.dataset} {r.mb_per_s / p.mb_per_s:.2f}x" for r, p in pairs)
    measured = ratios if not behind else f"behind on {'; '.join(behind)} (all: {ratios})"
    return _Verdict(text, measured, not behind)


def _verdicts_table(verdicts: Sequence[_Verdict]) -> str:
    lines = ["| target | measured | |", "|---|---|---|"]
    for v in verdicts:
        verdict = "not measured" if v.met is None else "**met**" if v.met else "**MISSED**"
        lines.append(f"| {v.target} | {v.measured} | {verdict} |")
    return "\n".join(lines)


def _conversion_cost(runs: Sequence[Run], dataset: str) -> _Verdict:
    """Converting Explicit -> Implicit (storescp-implicit) against verbatim (storescp-nodelay)."""
    text = f"{dataset}: converting costs < 20% of verbatim MB/s (fastpush-rust)"
    converted = _find(runs, RUST, "storescp-implicit", dataset)
    verbatim = _find(runs, RUST, "storescp-nodelay", dataset)
    if converted is None or verbatim is None:
        return _Verdict(text, "not measured", None)
    ratio = converted.mb_per_s / verbatim.mb_per_s
    measured = (
        f"{ratio:.2f}x of verbatim ({converted.mb_per_s:,.1f} vs {verbatim.mb_per_s:,.1f} MB/s)"
    )
    return _Verdict(text, measured, ratio >= 0.8)


def parallel_targets_table(runs: Sequence[Run]) -> str:
    """Issue 3's targets: four associations against storescu's one, within this run."""
    x4 = "fastpush-rust-x4"
    return _verdicts_table(
        [
            _ratio_target(
                runs,
                "storescp-fork-nodelay",
                STUDY,
                "files_per_s",
                2.0,
                "4 associations into storescp --fork (nodelay): ≥ 2x DCMTK files/s",
                x4,
            ),
            _ratio_target(
                runs,
                "storescp-fork-shipped",
                STUDY,
                "files_per_s",
                50.0,
                "4 associations into storescp --fork (as shipped): ≥ 50x DCMTK files/s",
                x4,
            ),
            _ratio_target(
                runs,
                "orthanc",
                STUDY,
                "files_per_s",
                8.0,
                "4 associations into Orthanc: ≥ 8x DCMTK files/s",
                x4,
            ),
        ]
    )


def tls_targets_table(runs: Sequence[Run], big_label: str) -> str:
    """Issue 5's targets: fastpush over TLS at least as fast as DCMTK over TLS."""
    return _verdicts_table(
        [
            _ratio_target(
                runs,
                "storescp-tls",
                BIG,
                "mb_per_s",
                1.0,
                f"{big_label} file over TLS: ≥ 1.0x DCMTK MB/s",
            ),
            _ratio_target(
                runs,
                "storescp-tls",
                STUDY,
                "files_per_s",
                1.0,
                "study over TLS: ≥ 1.0x DCMTK files/s",
            ),
        ]
    )


def targets_table(runs: Sequence[Run], big_label: str) -> str:
    """Issues 2 and 4's targets, each a ratio within this run, with met / missed."""
    return _verdicts_table(
        [
            _ratio_target(
                runs,
                "storescp-nodelay",
                BIG,
                "mb_per_s",
                1.0,
                f"{big_label} file into storescp-nodelay: ≥ 1.0x DCMTK MB/s",
            ),
            _rss_target(runs, 100.0, big_label),
            _ratio_target(
                runs,
                "storescp-nodelay",
                STUDY,
                "files_per_s",
                1.5,
                "study into storescp-nodelay: ≥ 1.5x DCMTK files/s",
            ),
            _ratio_target(
                runs,
                "storescp-shipped",
                STUDY,
                "files_per_s",
                20.0,
                "study into storescp-shipped: ≥ 20x DCMTK files/s",
            ),
            _ratio_target(
                runs, "orthanc", STUDY, "files_per_s", 5.0, "study into Orthanc: ≥ 5x DCMTK files/s"
            ),
            _rust_ahead(runs),
            _conversion_cost(runs, BIG),
            _conversion_cost(runs, STUDY),
            _ratio_target(
                runs,
                "storescp-implicit",
                BIG,
                "mb_per_s",
                1.0,
                f"{big_label} file converted into storescp-implicit: ≥ 1.0x DCMTK MB/s",
            ),
            _ratio_target(
                runs,
                "storescp-implicit",
                STUDY,
                "files_per_s",
                1.0,
                "study converted into storescp-implicit: ≥ 1.0x DCMTK files/s",
            ),
        ]
    )
