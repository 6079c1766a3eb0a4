"""Cluster push vs local push, in one run (issue 12).

The same generated study (1,000 files of ~0.5 MB by default) goes, over loopback, into
``storescp --fork --ignore`` with Nagle off (a sink that is not the bottleneck: what is left is
the sender and, for the cluster, the scheduling) and into Orthanc (a real PACS, the bottleneck
cluster pushes are for). Senders, in this process:

- ``local-xN``: ``fastpush.push(..., associations=N)``;
- ``dask-2w-xN``: ``fastpush.cluster.driver.push(..., associations_per_worker=N)`` on a
  ``LocalCluster`` of 2 worker processes started once beforehand (a cluster exists before a
  push in real use; its start-up is reported on its own).

Each cell runs ``--repeat`` times into a fresh sink; the median is shown. CPU s is the user+system
time of every process of the sender (this one, and the cluster's workers for a cluster push).

    python benches/dask_push.py [--files 1000] [--file-size 524288] [--repeat 3] > results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster
from sinks import Sink, start_sink

import fastpush
import fastpush.cluster.driver
from fastpush.synthetic import write_study

NON_BOTTLENECK = "storescp-fork-nodelay"


@dataclass
class Cell:
    sender: str
    sink: str
    files: int
    seconds: float
    cpu: float
    runs: int

    @property
    def rate(self) -> float:
        return self.files / self.seconds


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cluster_cpu(client: Client) -> float:
    return _cpu() + sum(client.run(_cpu).values())


def _measure(
    sender: str,
    sink_name: str,
    workdir: Path,
    repeat: int,
    send: Callable[[Sink], list[fastpush.Result]],
    cpu: Callable[[], float],
) -> Cell:
    times, cpus = [], []
    files = 0
    for run in range(repeat):
        sink = start_sink(sink_name, workdir / f"{sender}-{sink_name}-{run}")
        try:
            before, started = cpu(), time.perf_counter()
            results = send(sink)
            times.append(time.perf_counter() - started)
            cpus.append(cpu() - before)
            bad = [r for r in results if not r.ok]
            if bad:
                raise RuntimeError(f"{sender} into {sink_name}: {len(bad)} not stored: {bad[0]}")
            held = sink.stored_count()
            if held is not None and held != len(results):
                raise RuntimeError(f"{sink_name} holds {held} of {len(results)}")
            files = len(results)
        finally:
            sink.stop()
        print(f"{sender} -> {sink_name}: {times[-1]:.2f} s", file=sys.stderr)
    return Cell(sender, sink_name, files, statistics.median(times), statistics.median(cpus), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-size", type=int, default=512 * 1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastpush-dask-bench-") as tmp:
        root = Path(tmp)
        data = root / "study"
        write_study(data, count=args.files, pixel_bytes=args.file_size,
                    transfer_syntaxes=["1.2.840.10008.1.2.1"])  # fmt: skip
        paths = sorted(str(p) for p in data.iterdir())
        started = time.perf_counter()
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            startup = time.perf_counter() - started
            cells = _run_all(paths, root, args.repeat, client)
        print(_markdown(cells, args, startup, len(paths)))


def _run_all(paths: list[str], root: Path, repeat: int, client: Client) -> list[Cell]:
    cells: list[Cell] = []
    plan: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = [
        (NON_BOTTLENECK, (1, 2, 4), (1, 2)),
        ("orthanc", (1, 2, 4, 8), (1, 2, 4)),
    ]
    for sink_name, local, per_worker in plan:
        for n in local:

            def local_push(sink: Sink, n: int = n) -> list[fastpush.Result]:
                return fastpush.push(
                    paths, "127.0.0.1", sink.port, called_ae=sink.aet, associations=n
                )

            cells.append(_measure(f"local-x{n}", sink_name, root, repeat, local_push, _cpu))
        for n in per_worker:

            def cluster_push(sink: Sink, n: int = n) -> list[fastpush.Result]:
                return fastpush.cluster.driver.push(
                    paths,
                    "127.0.0.1",
                    sink.port,
                    client=client,
                    called_ae=sink.aet,
                    associations_per_worker=n,
                )

            cells.append(
                _measure(
                    f"dask-2w-x{n}",
                    sink_name,
                    root,
                    repeat,
                    cluster_push,
                    lambda: _cluster_cpu(client),
                )
            )
    return cells


def _best(cells: list[Cell], sink: str, prefix: str) -> Cell:
    return max((c for c in cells if c.sink == sink and c.sender.startswith(prefix)),
               key=lambda c: c.rate)  # fmt: skip


def _markdown(cells: list[Cell], args: Any, startup: float, files: int) -> str:
    mb = files * args.file_size / 1e6
    lines = [
        "# Cluster push (Dask) vs local push",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- host: {platform.node()}, {os.cpu_count()} cores; load average before: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- python {platform.python_version()}, fastpush {fastpush.__version__}, "
        f"dask {__import__('dask').__version__}",
        f"- dataset: {files} files of {args.file_size // 1024} KiB of pixels (~{mb:.0f} MB), "
        "one folder, Explicit VR Little Endian",
        "- sinks: `storescp --fork --ignore -dhl` with `TCP_NODELAY=1` "
        f"({NON_BOTTLENECK}), and Orthanc 1.10 (its own storage); a fresh sink per run",
        f"- cluster: `LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`, started "
        f"once in {startup:.1f} s (not in the times below)",
        f"- seconds: wall time of the call, median of {args.repeat}; CPU s: user+system of this "
        "process and, for a cluster push, of both workers",
        "",
        "| sender | sink | files | s | files/s | MB/s | CPU s | CPU ms/file |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.sender} | {c.sink} | {c.files} | {c.seconds:.2f} | {c.rate:,.0f} | "
            f"{mb / c.seconds:,.0f} | {c.cpu:.2f} | {1000 * c.cpu / c.files:.2f} |"
        )
    local_fast = _best(cells, NON_BOTTLENECK, "local")
    dask_fast = _best(cells, NON_BOTTLENECK, "dask")
    local_pacs = _best(cells, "orthanc", "local")
    dask_pacs = _best(cells, "orthanc", "dask")
    ratio = dask_fast.rate / local_fast.rate
    overhead = (dask_fast.seconds - local_fast.seconds) / files * 1000
    cpu_overhead = (dask_fast.cpu - local_fast.cpu) / files * 1000
    pacs_ratio = dask_pacs.rate / local_pacs.rate
    lines += [
        "",
        "## Targets (issue 12)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| cluster into a non-bottleneck sink ≥ 80% of the local files/s | "
        f"{dask_fast.sender} {dask_fast.rate:,.0f} vs {local_fast.sender} "
        f"{local_fast.rate:,.0f} files/s: {ratio:.0%} | {'yes' if ratio >= 0.8 else 'no'} |",
        f"| cluster into Orthanc matches the best local | {dask_pacs.sender} "
        f"{dask_pacs.rate:,.0f} vs {local_pacs.sender} {local_pacs.rate:,.0f} files/s: "
        f"{pacs_ratio:.0%} | {'yes' if pacs_ratio >= 0.95 else 'no'} |",
        "",
        f"Scheduling overhead (best cluster vs best local into {NON_BOTTLENECK}): "
        f"{overhead:+.2f} ms of wall time and {cpu_overhead:+.2f} ms of CPU per file.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
