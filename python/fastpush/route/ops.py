"""What an operator sees of a running router: :class:`RouterOps` watches a
:class:`~fastpush.route.router.Router` (its events, the time of each forward) and answers for
its state: the status document (``status``), health and readiness, and the held destinations
(kept in ``spool/held.json`` across restarts).

The HTTP endpoint (``http``), the Prometheus text (``metrics``) and the control actions
(``control``) read it; it reads the router, forwarders and spool, and never blocks them: every
figure is a counter or a look at a lane's head, so a status costs the same with 100,000 files
queued as with none.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .durability import write_durably
from .journal import RouteEvent, Step
from .spool import FAILED_LOG, HELD, SENDING

if TYPE_CHECKING:
    from .forwarder import Forwarder
    from .router import Router

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the forward-duration histogram's buckets."""
RATE_WINDOW = 10.0
"""Rates are the change over about this many seconds."""
MAX_PAGE = 1000


class Histogram:
    """Observations in fixed buckets (``LATENCY_BUCKETS``), their count and sum; thread-safe."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total


@dataclass
class Watch:
    """What the events told about one destination."""

    retries: int = 0
    failing_since: float | None = None
    last_error: str = ""
    last_error_time: float | None = None
    latency: Histogram = field(default_factory=Histogram)


def write_held(spool: Path, held: Iterable[str]) -> None:
    """Write the held destinations to ``spool/held.json``, durably (a new file renamed)."""
    target = spool / HELD
    data = json.dumps({"held": sorted(set(held))}).encode()
    write_durably(target, data, target.with_name(HELD + ".new"))


def read_held(spool: Path) -> set[str]:
    """The destinations ``spool/held.json`` holds (none when it is missing or unreadable)."""
    try:
        names = json.loads((spool / HELD).read_text()).get("held", [])
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, AttributeError) as exc:
        log.error("Cannot read %s: %s; no destination held", spool / HELD, exc)
        return set()
    return {n for n in names if isinstance(n, str)}


class FailedIndex:
    """The files in ``failed/<destination>/`` with the reason ``failed.jsonl`` gives for each
    (its last line naming the file), in arrival order; the listing is kept while the folder
    and its log do not change (and for at most ``max_age`` seconds)."""

    def __init__(self, failed: Path, *, max_age: float = 2.0) -> None:
        self.failed = failed
        self.max_age = max_age
        self._cache: dict[str, tuple[tuple[int, int], float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def destinations(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(p.name for p in self.failed.iterdir() if p.is_dir())
        return []

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def entries(self, destination: str) -> list[dict[str, Any]]:
        folder = self.failed / destination
        try:
            info = folder.stat()
        except FileNotFoundError:
            return []
        try:
            log_size = (folder / FAILED_LOG).stat().st_size
        except FileNotFoundError:
            log_size = 0
        key = (info.st_mtime_ns, log_size)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(destination)
            if cached is not None and cached[0] == key and now - cached[1] < self.max_age:
                return cached[2]
        reasons: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(FileNotFoundError), open(folder / FAILED_LOG, "rb") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                    reasons[Path(record["path"]).name] = record
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a crash
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.name != FAILED_LOG and entry.is_file(follow_symlinks=False)
        )
        listing = []
        for name in names:
            record = reasons.get(name, {})
            listing.append(
                {
                    "destination": destination,
                    "entry": name,
                    "sop_instance_uid": record.get("sop_instance_uid"),
                    "sop_class_uid": record.get("sop_class_uid"),
                    "status": record.get("status"),
                    "failure": record.get("failure"),
                    "reason": record.get("reason", "(no line in failed.jsonl)"),
                    "time": record.get("time"),
                }
            )
        with self._lock:
            self._cache[destination] = (key, now, listing)
        return listing

    def page(self, destination: str | None, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """Failed entries (of one destination, or all), ``limit`` from ``offset``."""
        offset = max(0, offset)
        limit = max(0, min(limit, MAX_PAGE))
        names = [destination] if destination is not None else self.destinations()
        total, page = 0, list[dict[str, Any]]()
        for name in names:
            listing = self.entries(name)
            start = max(0, offset - total)
            if start < len(listing) and len(page) < limit:
                page.extend(listing[start : start + limit - len(page)])
            total += len(listing)
        return {"offset": offset, "limit": limit, "total": total, "entries": page}


def queue_figures(folder: Path) -> tuple[int, float | None]:
    """Files in a queue folder and the oldest one's age in seconds (for a stopped router)."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return 0, None
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            return len(names), max(0.0, time.time() - (folder / name).stat().st_mtime)
    return len(names), None


class RouterOps:
    """Watches ``router`` for operators. Create it before ``router.start()``: it holds the
    destinations ``spool/held.json`` names, counts retries and forward durations, and chains
    itself before the router's ``on_event``."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.started = time.time()
        self.watches = {name: Watch() for name in router.forwarders}
        self.failed = FailedIndex(router.spool.failed)
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque(maxlen=64)
        self._listeners: list[Callable[[RouteEvent], None]] = []
        for name in read_held(router.spool.directory) & set(router.forwarders):
            router.forwarders[name].hold()
            log.warning("%s is held (spool/held.json): nothing is sent until released", name)
        for name, forwarder in router.forwarders.items():
            forwarder.timing = self.watches[name].latency.observe
        self._chained = router.on_event
        router.on_event = self._on_event

    # -- events ------------------------------------------------------------------------------

    def listen(self, listener: Callable[[RouteEvent], None]) -> None:
        """Call ``listener(event)`` for every event too (before the router's ``on_event``)."""
        self._listeners.append(listener)

    def tell(self, event: RouteEvent) -> None:
        """Journal an operation's event (and tell the listeners)."""
        self.router.journal.write(event)
        self._on_event(event)

    def _on_event(self, event: RouteEvent) -> None:
        watch = self.watches.get(event.destination or "")
        if watch is not None:
            if event.step is Step.RETRYING:
                with self._lock:
                    watch.retries += 1
                    if watch.failing_since is None:
                        watch.failing_since = event.time
                    watch.last_error, watch.last_error_time = event.reason, event.time
            elif event.step is Step.FORWARDED:
                watch.failing_since = None
            elif event.step is Step.FAILED:
                watch.last_error, watch.last_error_time = event.reason, event.time
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("An ops listener raised on %s", event.step)
        if self._chained is not None:
            self._chained(event)

    # -- held --------------------------------------------------------------------------------

    def forwarder(self, destination: str) -> Forwarder:
        try:
            return self.router.forwarders[destination]
        except KeyError:
            raise KeyError(f"no destination named {destination!r}") from None

    def held(self) -> set[str]:
        return {name for name, f in self.router.forwarders.items() if f.held}

    def set_held(self, destination: str, held: bool, by: str) -> bool:
        """Hold or release ``destination``; whether that changed anything. Journaled."""
        forwarder = self.forwarder(destination)
        with self._lock:
            if forwarder.held == held:
                return False
            forwarder.hold(held)
            # Destinations held in the file but not configured in this run stay held there.
            kept = read_held(self.router.spool.directory) - set(self.router.forwarders)
            write_held(self.router.spool.directory, kept | self.held())
        log.warning("%s %s (asked by %s)", destination, "held" if held else "released", by)
        self.tell(RouteEvent(Step.HELD if held else Step.RELEASED, "", destination, by=by))
        return True

    # -- health ------------------------------------------------------------------------------

    def health(self) -> str | None:
        """Why the router is not healthy (not receiving, refusing stores, a spool it cannot
        write), or None."""
        router = self.router
        if not router.receiving:
            return "not receiving: the router is stopped or not started"
        refusing = router.refusing()
        if refusing is not None:
            return f"refusing new stores (0xA700): {refusing}"
        probe = router.spool.incoming / f".healthz-{os.getpid()}-{threading.get_ident()}.part"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"\0")
            finally:
                os.close(fd)
                probe.unlink()
        except OSError as exc:
            return f"spool not writable: {exc}"
        if router.journal.pending:
            return f"journal not written: {router.journal.pending} lines wait in memory"
        return None

    def ready(self) -> bool:
        """The DICOM port is being served."""
        return self.router.receiving

    # -- status ------------------------------------------------------------------------------

    def free_disk(self) -> int:
        disk = os.statvfs(self.router.spool.directory)
        return disk.f_bavail * disk.f_frsize

    def oldest_age(self, forwarder: Forwarder) -> float | None:
        entry = forwarder.oldest()
        if entry is None:
            return None
        for path in (entry.path, entry.path.with_name(entry.path.name + SENDING)):
            with contextlib.suppress(FileNotFoundError):
                return max(0.0, time.time() - path.stat().st_mtime)
        return None

    def state(self, forwarder: Forwarder) -> str:
        if forwarder.held:
            return "held"
        if forwarder.stats.retrying and self.watches[forwarder.name].failing_since is not None:
            return "failing"
        return "forwarding" if forwarder.stats.waiting else "idle"

    def _rates(self, counts: dict[str, tuple[int, int]]) -> dict[str, tuple[float, float]]:
        """Files/s and bytes/s per destination over about the last ``RATE_WINDOW`` seconds."""
        now = time.monotonic()
        with self._lock:
            while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW:
                self._samples.popleft()
            base = self._samples[0] if self._samples else None
            if not self._samples or now - self._samples[-1][0] >= 1.0:
                self._samples.append((now, counts))
        rates: dict[str, tuple[float, float]] = {}
        for name, (files, size) in counts.items():
            if base is None or now - base[0] < 0.5 or name not in base[1]:
                rates[name] = (0.0, 0.0)
                continue
            seconds = now - base[0]
            before = base[1][name]
            rates[name] = ((files - before[0]) / seconds, (size - before[1]) / seconds)
        return rates

    def status(
        self,
        *,
        failed_destination: str | None = None,
        failed_offset: int = 0,
        failed_limit: int = 50,
    ) -> dict[str, Any]:
        """The status document ``/api/status`` serves."""
        router = self.router
        stats = router.stats()
        counts = {n: (d.forwarded, d.bytes) for n, d in stats.destinations.items()}
        counts[""] = (stats.received, stats.received_bytes)
        rates = self._rates(counts)
        destinations = []
        for name, forwarder in router.forwarders.items():
            dest = stats.destinations[name]
            watch = self.watches[name]
            target = forwarder.destination
            age = self.oldest_age(forwarder)
            destinations.append(
                {
                    "name": name,
                    "host": target.host,
                    "port": target.port,
                    "called_ae": target.called_ae,
                    "state": self.state(forwarder),
                    "held": forwarder.held,
                    "failing_since": watch.failing_since if dest.retrying else None,
                    "last_error": watch.last_error,
                    "last_error_time": watch.last_error_time,
                    "queued": dest.waiting,
                    "oldest_age_seconds": None if age is None else round(age, 3),
                    "forwarded": dest.forwarded,
                    "forwarded_bytes": dest.bytes,
                    "relayed": dest.relayed,
                    "failed": dest.failed,
                    "retries": watch.retries,
                    "associations": forwarder.associations,
                    "files_per_second": round(rates[name][0], 2),
                    "bytes_per_second": round(rates[name][1], 1),
                }
            )
        with router._lock:  # the counts per calling AE grow while associations run
            by_ae = {ae: list(c) for ae, c in router.by_calling_ae.items()}
        free = self.free_disk()
        return {
            "router": {
                "ae_title": router.server.ae_title,
                "port": router.port,
                "receiving": router.receiving,
                "refusing": router.refusing(),
                "started": self.started,
                "uptime_seconds": round(time.time() - self.started, 3),
                "associations_in": router.server.stats.active,
            },
            "received": {
                "files": stats.received,
                "bytes": stats.received_bytes,
                "dropped": stats.dropped,
                "refused": stats.refused,
                "files_per_second": round(rates[""][0], 2),
                "bytes_per_second": round(rates[""][1], 1),
                "by_calling_ae": {
                    ae: {"files": c[0], "bytes": c[1], "refused": c[2]} for ae, c in by_ae.items()
                },
            },
            "spool": {
                "directory": str(router.spool.directory),
                "files": stats.spooled_files,
                "bytes": stats.spooled_bytes,
                "free_bytes": free,
                "max_spool_bytes": router.max_spool,
                "min_free_bytes": router.min_free,
                "journal_pending": stats.journal_pending,
                "journal_lost": stats.journal_lost,
            },
            "destinations": destinations,
            "failed": self.failed.page(failed_destination, failed_offset, failed_limit),
        }
