"""The router's Prometheus metrics, in the text format, through ``prometheus_client`` (the
``ops`` extra; imported only when metrics are asked for).

Every figure is read from the router when scraped (a collector, no per-file work beyond the
counters the router keeps anyway). Names follow Prometheus conventions: counters end in
``_total``, units are base units (``_seconds``, ``_bytes``); labels are ``destination`` and
``calling_ae`` only (never a UID). The families (labels in braces):

- ``fastpush_received_files_total``, ``fastpush_received_bytes_total`` {calling_ae}: received
  and spooled;
- ``fastpush_refused_files_total`` {calling_ae}: stores answered 0xA700 before their data were
  read (``max_spool``, ``min_free``); ``fastpush_dropped_files_total``: no destination picked;
- ``fastpush_forwarded_files_total``, ``fastpush_forwarded_bytes_total`` {destination}: stored
  by the destination; ``fastpush_relayed_files_total``: of those, sent on while they were still
  being received (cut-through); ``fastpush_failed_files_total``: refused for good (moved to
  ``failed/``); ``fastpush_retries_total``: transient failures (the file waits and goes again);
- ``fastpush_forward_duration_seconds`` {destination}: histogram of one file's C-STORE;
- ``fastpush_queue_files``, ``fastpush_queue_oldest_age_seconds`` {destination}: files waiting
  and how long the oldest has been spooled; ``fastpush_destination_held``,
  ``fastpush_destination_failing`` (0/1), ``fastpush_failing_since_seconds`` (Unix time);
  ``fastpush_associations_out``: associations open to it;
- ``fastpush_spool_files``, ``fastpush_spool_bytes``: what some destination still waits for;
  ``fastpush_disk_free_bytes``: free space on the spool's file system;
- ``fastpush_committed_files_total``, ``fastpush_commit_pending_files`` {destination}: with
  Storage Commitment (``commit = true``), files committed (they left the spool) and files stored
  awaiting their commitment; only for those destinations;
- ``fastpush_studies_completed_total``, ``fastpush_studies_open``: with ``study_stable``, studies
  completed (again when they complete again) and studies waiting for their stable time;
- ``fastpush_associations_in``; ``fastpush_receiving`` and ``fastpush_refusing`` (0/1);
  ``fastpush_journal_lines_lost_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .ops import RouterOps

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from .router import Router


def _collector(ops: RouterOps) -> Collector:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import Collector

    class RouterCollector(Collector):
        def collect(self) -> Iterator[Any]:
            router = ops.router
            stats = router.stats()
            with router._lock:  # the counts per calling AE grow while associations run
                by_ae = {ae: list(c) for ae, c in router.by_calling_ae.items()}
            ae = ["calling_ae"]
            files = CounterMetricFamily(
                "fastpush_received_files", "Files received and spooled.", labels=ae
            )
            size = CounterMetricFamily(
                "fastpush_received_bytes", "Bytes of the files received and spooled.", labels=ae
            )
            refused = CounterMetricFamily(
                "fastpush_refused_files",
                "Stores answered 0xA700 before their data were read (spool limit, free disk).",
                labels=ae,
            )
            for title, (count, total, refusals) in sorted(by_ae.items()):
                files.add_metric([title], count)
                size.add_metric([title], total)
                refused.add_metric([title], refusals)
            yield from (files, size, refused)
            yield CounterMetricFamily(
                "fastpush_dropped_files",
                "Files received for which no destination was picked.",
                value=stats.dropped,
            )
            d = ["destination"]
            families = {
                key: kind(f"fastpush_{key}", text, labels=d)
                for key, kind, text in (
                    ("forwarded_files", CounterMetricFamily, "Files stored by the destination."),
                    ("forwarded_bytes", CounterMetricFamily, "Bytes stored by the destination."),
                    (
                        "relayed_files",
                        CounterMetricFamily,
                        "Of the files stored, those sent on while they were being received.",
                    ),
                    ("failed_files", CounterMetricFamily, "Files refused for good (failed/)."),
                    ("retries", CounterMetricFamily, "Transient failures, tried again later."),
                    ("queue_files", GaugeMetricFamily, "Files waiting for the destination."),
                    (
                        "queue_oldest_age_seconds",
                        GaugeMetricFamily,
                        "Seconds the oldest file waiting for the destination has been spooled.",
                    ),
                    ("destination_held", GaugeMetricFamily, "1 while the destination is held."),
                    (
                        "destination_failing",
                        GaugeMetricFamily,
                        "1 while files wait for the destination after a transient failure.",
                    ),
                    (
                        "failing_since_seconds",
                        GaugeMetricFamily,
                        "Unix time the destination started failing (absent when it is not).",
                    ),
                    ("associations_out", GaugeMetricFamily, "Associations open to it."),
                )
            }
            latency = HistogramMetricFamily(
                "fastpush_forward_duration_seconds",
                "Seconds for one file's C-STORE to the destination (response included).",
                labels=d,
            )
            for name, forwarder in router.forwarders.items():
                dest = stats.destinations[name]
                watch = ops.watches[name]
                label = [name]
                families["forwarded_files"].add_metric(label, dest.forwarded)
                families["forwarded_bytes"].add_metric(label, dest.bytes)
                families["relayed_files"].add_metric(label, dest.relayed)
                families["failed_files"].add_metric(label, dest.failed)
                families["retries"].add_metric(label, watch.retries)
                families["queue_files"].add_metric(label, dest.waiting)
                age = ops.oldest_age(forwarder)
                families["queue_oldest_age_seconds"].add_metric(label, age or 0.0)
                families["destination_held"].add_metric(label, int(forwarder.held))
                failing = ops.state(forwarder) == "failing"
                families["destination_failing"].add_metric(label, int(failing))
                if failing and watch.failing_since is not None:
                    families["failing_since_seconds"].add_metric(label, watch.failing_since)
                families["associations_out"].add_metric(label, forwarder.associations)
                buckets, seconds = watch.latency.snapshot()
                latency.add_metric(label, buckets, seconds)
            yield from families.values()
            yield latency
            yield from _commitments(router)
            yield from _studies(router)
            gauges = (
                ("spool_files", "Files some destination still waits for.", stats.spooled_files),
                ("spool_bytes", "Bytes of those files.", stats.spooled_bytes),
                ("disk_free_bytes", "Free bytes on the spool's file system.", ops.free_disk()),
                ("associations_in", "Incoming associations open.", router.server.stats.active),
                ("receiving", "1 while the DICOM port is served.", int(router.receiving)),
                (
                    "refusing",
                    "1 while new stores are answered 0xA700.",
                    int(router.refusing() is not None),
                ),
            )
            for key, text, value in gauges:
                yield GaugeMetricFamily(f"fastpush_{key}", text, value=value)
            yield CounterMetricFamily(
                "fastpush_journal_lines_lost",
                "Journal lines dropped because the disk refused them.",
                value=stats.journal_lost,
            )

    return RouterCollector()


def _commitments(router: Router) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    committing = {n: f.commitments for n, f in router.forwarders.items() if f.commitments}
    if not committing:
        return
    committed = CounterMetricFamily(
        "fastpush_committed_files",
        "Files the destination committed to (Storage Commitment); they left the spool.",
        labels=["destination"],
    )
    pending = GaugeMetricFamily(
        "fastpush_commit_pending_files",
        "Files stored at the destination, awaiting its commitment.",
        labels=["destination"],
    )
    for name, commitments in committing.items():
        committed.add_metric([name], commitments.committed)
        pending.add_metric([name], commitments.pending)
    yield from (committed, pending)


def _studies(router: Router) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if router.studies is None:
        return
    yield CounterMetricFamily(
        "fastpush_studies_completed",
        "Studies completed (no new file for study_stable seconds).",
        value=router.studies.completed,
    )
    yield GaugeMetricFamily(
        "fastpush_studies_open",
        "Studies waiting for their stable time.",
        value=router.studies.waiting,
    )


class Metrics:
    """Renders the router's metrics for ``/metrics``. ImportError (with the fix) when
    ``prometheus_client`` is missing."""

    def __init__(self, ops: RouterOps) -> None:
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
        except ImportError as exc:
            raise ImportError(
                "the router's metrics need prometheus_client: pip install 'fastpush[ops]'"
            ) from exc
        self.content_type = CONTENT_TYPE_LATEST
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_collector(ops))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
