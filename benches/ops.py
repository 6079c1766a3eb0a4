"""The router's operations endpoint (issue 19): what it costs while routing, how fast it answers.

1. Routing 1,000 x 0.5 MB (DCMTK storescu -> ``fastpush route`` -> ``storescp --ignore``, the
   spool on tmpfs, as in ``route.py``) without ``--http``, and with ``--http`` and a scraper
   polling ``/metrics`` every 100 ms; the two alternate, ``--repeat`` times each; files/s from
   storescu's first byte to the last file forwarded (the journal). Target: with >= 0.97x without.
2. ``/metrics`` and ``/api/status`` with 100,000 entries queued: a spool holding 100,000 queued
   files for one held destination, recovered by an in-process router; each endpoint asked
   ``--requests`` times over HTTP (a new connection each, as a scraper does). Target: <= 10 ms.

    python benches/ops.py [--data DIR] [--repeat 3] [--queued 100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import route
from e2e import _require_release_build, _study, _warm_page_cache
from receive import TMPFS
from senders import Data
from sinks import free_port

SCRAPE_EVERY = 0.1


class Scraper:
    """Polls a URL every ``every`` seconds in a thread; counts answers and their times."""

    def __init__(self, url: str, every: float = SCRAPE_EVERY) -> None:
        self.url = url
        self.every = every
        self.times: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    answer.read()
                self.times.append(time.perf_counter() - started)
            except OSError:
                self.errors += 1  # not up yet, or gone
            self._stop.wait(max(0.0, self.every - (time.perf_counter() - started)))

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _routing(
    data: Data, workdir: Path, timeout: float, http: bool
) -> tuple[route.Run, Scraper | None]:
    """One routed run, with or without the endpoint and its scraper."""
    name = "fastpush-route+http" if http else "fastpush-route"
    http_port = free_port()

    def command(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
        argv, journal = route._fastpush_route(port, dest, spool)
        if http:
            argv += ["--http", str(http_port)]
        return argv, journal

    route.ROUTERS[name] = command
    scraper = Scraper(f"http://127.0.0.1:{http_port}/metrics") if http else None
    if scraper is None:
        return route._execute(data, name, workdir, timeout), None
    with scraper:
        run = route._execute(data, name, workdir, timeout)
    return run, scraper


def _fill_spool(spool: Path, count: int, destination: str) -> None:
    """A spool as a router leaves it: ``count`` small files queued for ``destination``, which
    is held (spool/held.json)."""
    queue = spool / "queue" / destination
    queue.mkdir(parents=True)
    payload = b"\0" * 1024
    for seq in range(1, count + 1):
        study = f"1.2.3.{seq % 200}"
        name = f"CT.1.2.826.0.1.{seq}"
        (queue / f"{seq:012d}_{study}_{name}").write_bytes(payload)
    (spool / "held.json").write_text(json.dumps({"held": [destination]}))


def _latency(url: str, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as answer:
            answer.read()
        times.append(time.perf_counter() - started)
    return times


def _queued(count: int, requests: int) -> list[tuple[str, list[float]]]:
    from fastpush import Destination, Router
    from fastpush.route.http import OpsServer
    from fastpush.route.ops import RouterOps

    spool = Path(tempfile.mkdtemp(prefix="ops-spool-", dir=TMPFS))
    try:
        dest = Destination("127.0.0.1", free_port(), "NOBODY", name="pacs")
        _fill_spool(spool, count, dest.key)
        router = Router(0, [dest], spool=spool, host="127.0.0.1")
        server = OpsServer(RouterOps(router), 0).start()
        started = time.perf_counter()
        router.start()
        print(
            f"recovered {count} entries in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        try:
            status = json.load(urllib.request.urlopen(server.url + "/api/status"))
            assert status["destinations"][0]["queued"] == count, status["destinations"]
            return [
                (path, _latency(server.url + path, requests))
                for path in ("/metrics", "/api/status")
            ]
        finally:
            server.stop()
            router.stop()
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastpush-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--skip-routing", action="store_true")
    parser.add_argument("--out", type=Path, help="append the tables to this file")
    args = parser.parse_args(argv)
    version = _require_release_build()
    lines = [f"fastpush {version}; {os.cpu_count()} CPUs", ""]
    if not args.skip_routing:
        args.data.mkdir(parents=True, exist_ok=True)
        data = _study(args.data, 1000, 512_000)
        _warm_page_cache(data)
        runs: dict[bool, list[route.Run]] = {False: [], True: []}
        scrapes: list[float] = []
        with tempfile.TemporaryDirectory(prefix="fastpush-ops-bench-") as tmp:
            for n in range(args.repeat):
                for http in (False, True):
                    workdir = Path(tmp) / f"{n}-{http}"
                    workdir.mkdir()
                    run, scraper = _routing(data, workdir, args.timeout, http)
                    if scraper is not None:
                        scrapes += scraper.times
                    print(f"{'with' if http else 'without'} --http: {run}", file=sys.stderr)
                    runs[http].append(run)
        lines += [
            f"Routing {data.files} x 0.5 MB, storescu -> fastpush route -> storescp --ignore "
            f"(spool on tmpfs), alternating, {args.repeat} runs each:",
            "",
            "| run | without --http files/s | with --http + scraper every 100 ms files/s | ratio |",
            "|---|---|---|---|",
        ]
        ratios = []
        for n, (plain, scraped) in enumerate(zip(runs[False], runs[True], strict=True)):
            ratio = scraped.files_s / plain.files_s
            ratios.append(ratio)
            lines.append(
                f"| {n + 1} | {plain.files_s:,.1f} ({plain.status}) "
                f"| {scraped.files_s:,.1f} ({scraped.status}) | {ratio:.3f} |"
            )
        plain_median = statistics.median(r.files_s for r in runs[False])
        scraped_median = statistics.median(r.files_s for r in runs[True])
        ratio = scraped_median / plain_median
        lines += [
            f"| median | {plain_median:,.1f} | {scraped_median:,.1f} | {ratio:.3f} |",
            "",
            f"Scrapes during the runs: {len(scrapes)}, median {_ms(scrapes, 0.5):.2f} ms, "
            f"p99 {_ms(scrapes, 0.99):.2f} ms.",
            "",
            f"| target | measured | met |\n|---|---|---|\n"
            f"| with --http and a scraper ≥ 0.97x without (median files/s) | {ratio:.3f}x "
            f"| {'yes' if ratio >= 0.97 else '**no**'} |",
            "",
        ]
    results = _queued(args.queued, args.requests)
    lines += [
        f"With {args.queued:,} entries queued (one held destination), {args.requests} requests "
        "each, a new connection each:",
        "",
        "| endpoint | median ms | p90 ms | p99 ms | max ms | ≤ 10 ms (p99) |",
        "|---|---|---|---|---|---|",
    ]
    for path, times in results:
        p99 = _ms(times, 0.99)
        lines.append(
            f"| {path} | {_ms(times, 0.5):.2f} | {_ms(times, 0.9):.2f} | {p99:.2f} "
            f"| {max(times) * 1e3:.2f} | {'yes' if p99 <= 10 else '**no**'} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
