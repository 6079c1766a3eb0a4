"""A store-and-forward router: :class:`Router` receives C-STORE, spools and forwards.

The receiving side is a :class:`~fastpush.receive.server.StorageServer` writing into the spool
(the data ``fdatasync``'d in the receive loop); its ``on_store`` queues each file for its
destinations (``spool``, the queue folders fsync'd, shared between associations) before the
sender is answered, so success means "on disk, queued" (``durability``). One
:class:`~fastpush.route.forwarder.Forwarder` per destination pushes its queue with a
``StoreClient``. Above ``max_spool`` bytes waiting, new stores are answered 0xA700 (Out of
Resources) before their data are read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..receive.negotiation import AcceptPolicy, known_transfer_syntaxes
from ..receive.received import Incoming, Received
from ..receive.report_listener import ReportListener
from ..receive.server import StorageServer
from ..receive.storage import Layout, study_folder
from ..send.commit import CommitOptions
from ..send.options import ConnectionOptions
from ..send.retry import RetryPolicy
from ..transport.connect import resolve_engine
from ..transport.tls import TLSOptions
from ..wire import dimse
from .durability import Durability
from .forwarder import Destination, DestinationStats, Forwarder, ForwardKeywords
from .journal import MAX_BYTES, Journal, RouteEvent, Step
from .relay import THRESHOLD, Relay
from .rules import Rule, Rules
from .spool import FREE_BYTES, JOURNAL, Spool
from .studies import Studies, Study, study_and_series

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("fastpush.route.router")

MAX_CALLING_AES = 200
OTHER_AES = "(others)"

Picker = Callable[[Received], "Iterable[Destination | str] | None"]
"""``on_receive``: the destinations (objects or their names) a received file goes to; None or
nothing drops it."""


@dataclass
class RouterStats:
    """A snapshot of the router's totals."""

    received: int = 0
    """Files received."""
    received_bytes: int = 0
    """Bytes of the files received."""
    dropped: int = 0
    """Files received that ``on_receive`` sent nowhere."""
    refused: int = 0
    """Stores answered 0xA700 because the spool was over ``max_spool``."""
    spooled_files: int = 0
    """Files in the spool, waiting for some destination."""
    spooled_bytes: int = 0
    """Bytes of the files in the spool."""
    journal_pending: int = 0
    """Journal lines waiting in memory for the disk to take them."""
    journal_lost: int = 0
    """Journal lines dropped: the disk refused them and too many were waiting."""
    destinations: dict[str, DestinationStats] = field(default_factory=dict)
    """Each destination's totals, by name."""
    rules: dict[str, int] = field(default_factory=dict)
    """With ``rules``: files decided by each rule (by label, ``unmatched`` for the policy)."""


class Router:
    """Receives on ``host:port`` and forwards every file to ``destinations``, durably.

    ``spool``: the folder files wait in (see :mod:`fastpush.route.spool`); one router per spool.
    ``associations``: parallel associations (and ordered lanes) per destination. ``retry``: the
    attempts of a file within one try of the client, and the growing delay between tries of a
    file that keeps failing transiently (it is tried until it is stored or refused for good).
    ``max_spool``: bytes waiting above which new stores are refused with 0xA700; ``min_free``:
    free bytes on the spool's disk below which they are too (until space returns).
    ``durability`` (``"fsync"``, ``"os"``): what success means to a sender (see
    :mod:`fastpush.route.durability`): on disk and queued, or queued in the page cache (a
    machine crash or power cut can lose acknowledged files).
    ``journal_max``: bytes past which ``journal.jsonl`` is rotated (``journal.jsonl.1``...,
    ``journal.KEEP`` kept; None: never). ``study_stable``: seconds without a new file of a
    study after which it is complete: a ``study_complete`` journal line, then
    ``on_study_complete(study)`` (a :class:`~fastpush.route.studies.Study`, from the timer
    thread), and destinations with ``study_complete`` forward its files only then.
    ``commit_timeout``: seconds a destination with ``commit`` has to report its commitment
    (see :mod:`fastpush.route.commit`); ``commit_port``: where the router listens for reports a
    destination sends on an association of its own (as the calling AE title; None: reports
    are awaited on the association that asked).
    ``idle_release`` (a client option, default ``forwarder.IDLE_RELEASE``, 30 s): an
    association to a destination carrying no file for that long is released.
    ``on_receive(received)`` picks the destinations of each file (default: all); it runs in the
    association's thread. ``rules`` (:class:`~fastpush.route.rules.Rules`, or a list of
    :class:`~fastpush.route.rules.Rule` taken first-match with unmatched files dropped) pick
    them from the header instead, and the journal says which rule did; a destination's own
    ``associations``, ``retry`` and ``proposal`` replace the router's for it.
    ``on_event(event)`` gets every :class:`RouteEvent` (also written to
    ``spool/journal.jsonl``), from any thread: keep it quick. ``tls``, ``accept``,
    ``max_associations``, ``max_connections``, ``acse_timeout``, ``timeout`` and
    ``dataset_check`` are the receiving server's (see :class:`~fastpush.StorageServer`).
    ``connection`` (:class:`~fastpush.ConnectionOptions`) says how the destinations' clients
    connect, each with its destination's ``called_ae`` and ``tls``; ``calling_ae`` replaces its
    calling AE title (default: ``connection``'s, else ``ae_title``). The other keyword
    arguments go to each destination's ``StoreClient`` (:class:`ForwardKeywords`: ``engine``,
    ``max_pdu``, ``connect_timeout``, ``dimse_timeout``, ``identity``, ``proposal``...).

    ``cut_through`` (bytes, default 8 MB, at least 64 KiB; None: never): a file larger than
    that is sent on while it is still being received, to each destination whose lane for its
    study is idle, and finished only once it is spooled and queued for it (see
    :mod:`fastpush.route.relay`); with ``rules`` only when the file's head (64 KiB) reaches
    past every element they name, not with ``on_receive``; with the Rust engine, and to
    destinations without edits, study completion or commitment.

    ``start()`` recovers the spool (files left by an earlier run go first) and serves in
    background threads; ``stop()`` stops receiving and forwarding, leaving waiting files in the
    spool for the next run. A context manager. Thread-safe.
    """

    def __init__(
        self,
        port: int,
        destinations: Sequence[Destination],
        *,
        spool: str | Path,
        host: str = "",
        ae_title: str = "FASTPUSH",
        associations: int = 2,
        retry: RetryPolicy | None = None,
        max_spool: int | None = None,
        min_free: int | None = None,
        on_receive: Picker | None = None,
        rules: Rules | Sequence[Rule] | None = None,
        on_event: Callable[[RouteEvent], None] | None = None,
        accept: AcceptPolicy | None = None,
        tls: TLSOptions | None = None,
        max_associations: int = 64,
        timeout: float | None = 60.0,
        calling_ae: str | None = None,
        dataset_check: bool = True,
        max_connections: int | None = None,
        acse_timeout: float | None = 30.0,
        connection: ConnectionOptions | None = None,
        durability: Durability | str = Durability.FSYNC,
        journal_max: int | None = MAX_BYTES,
        study_stable: float | None = None,
        on_study_complete: Callable[[Study], None] | None = None,
        commit_timeout: float | None = 60.0,
        commit_port: int | None = None,
        cut_through: int | None = THRESHOLD,
        **client_options: Unpack[ForwardKeywords],
    ) -> None:
        if not destinations:
            raise ValueError("a router needs at least one destination")
        names = [d.key for d in destinations]
        if len(set(names)) != len(names):
            raise ValueError(f"two destinations share a name: {names}")
        if associations < 1:
            raise ValueError("associations must be at least 1")
        if max_spool is not None and max_spool <= 0:
            raise ValueError("max_spool must be more than 0 bytes")
        if study_stable is not None and not study_stable > 0:
            raise ValueError("study_stable must be more than 0 seconds")
        if study_stable is None and any(d.study_complete for d in destinations):
            raise ValueError("destinations with study_complete need study_stable")
        for d in destinations:
            if d.plan is not None:  # issue 18: a key that cannot be read stops us here
                d.plan.compiled  # noqa: B018 (compiled once, the spool still closed)
        self.destinations = {d.key: d for d in destinations}
        self.max_spool = max_spool
        # ops (issue 19): the disk guard; files, bytes, refused per calling AE (at most
        # MAX_CALLING_AES titles, the others counted under OTHER_AES).
        self.min_free = min_free
        self.by_calling_ae: dict[str, list[int]] = {}
        self.on_receive = on_receive
        self.rules = rules if isinstance(rules, Rules) or rules is None else Rules(rules)
        if self.rules is not None:
            if on_receive is not None:
                raise ValueError("give rules or on_receive, not both")
            unknown = sorted(self.rules.destinations() - set(self.destinations))
            if unknown:
                raise ValueError(f"rules name unknown destinations: {unknown}")
        self._by_rule: dict[str, int] = {}
        self.on_event = on_event
        self.durability = Durability(durability)
        self.dataset_check = dataset_check
        self.spool = Spool(spool, self.durability)
        self.journal = Journal(self.spool.directory / JOURNAL, max_bytes=journal_max)
        # Lifecycle (issue 19): study completion, and the destinations that wait for it.
        self.on_study_complete = on_study_complete
        self.studies = (
            None
            if study_stable is None
            else Studies(study_stable, self._study_complete, self._study_ready)
        )
        self._received = [0, 0, 0, 0]  # files, bytes, dropped, refused
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._started = False
        self._stopped = False
        if connection is None:
            outgoing = ConnectionOptions(calling_ae=calling_ae or ae_title)
        else:
            outgoing = (
                connection if calling_ae is None else replace(connection, calling_ae=calling_ae)
            )
        # Confirmed delivery (issue 20).
        self.report_listener = (
            ReportListener(host, commit_port, ae_title=outgoing.calling_ae)
            if commit_port is not None and any(d.commit for d in destinations)
            else None
        )
        commit = CommitOptions(timeout=commit_timeout, waiter=self.report_listener)
        self.forwarders = {
            d.key: Forwarder(
                d,
                self.spool,
                lanes=d.associations or associations,
                retry=d.retry or retry or RetryPolicy(max_backoff=60.0),
                tell=self._tell,
                on_idle=self._wake,
                connection=outgoing,
                commit=commit,
                **_own(d, client_options),
            )
            for d in destinations
        }
        for forwarder in self.forwarders.values():
            if forwarder.destination.study_complete and self.studies is not None:
                forwarder.complete = self.studies.complete
        # Where a file goes is known before it is whole from the rules and its head (or when
        # every file goes everywhere), not from on_receive, which wants the whole file; only
        # the Rust engine sends a file while it arrives.
        self.relay = (
            Relay(
                cut_through,
                list(self.forwarders.values()),
                None if self.rules is None else self._pick_early,
            )
            if cut_through is not None
            and on_receive is None
            and resolve_engine(client_options.get("engine")) == "rust"
            else None
        )
        self.server = StorageServer(
            host,
            port,
            ae_title=ae_title,
            directory=self.spool.incoming,
            on_store=self._on_store,
            before_store=self._before_store,
            accept=accept,
            max_associations=max_associations,
            tls=tls,
            # Flat: a folder per study would stay behind, empty, for every study of a run.
            layout=Layout.FLAT,
            unique_filenames=True,
            fsync=self.durability is Durability.FSYNC,
            named_by_handler=True,  # the queue links: spool.enqueue
            cut_through=self.relay,
            timeout=timeout,
            dataset_check=dataset_check,
            max_connections=max_connections,
            acse_timeout=acse_timeout,
        )
        assert self.server.storage is not None
        self.storage = self.server.storage
        self.storage.recycle = self.spool.recycle
        if min_free is not None:  # spent files kept to write over never eat into it
            self.spool.free_floor = max(self.spool.free_floor, min_free + FREE_BYTES)
        self.host, self.port = self.server.host, self.server.port
        self._serving: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> Router:
        """Recover the spool, start forwarding, then receiving (in background threads)."""
        if self._begin():
            self._serving = threading.Thread(
                target=self.server.serve_forever, name=f"fastpush-route-{self.port}", daemon=True
            )
            self._serving.start()
        return self

    def serve_forever(self) -> None:
        """Recover the spool, start forwarding, then receive in this thread until
        :meth:`stop` is called from another."""
        if self._begin():
            self.server.serve_forever()

    def _begin(self) -> bool:
        with self._lock:
            if self._started:
                return False
            self._started = True
        recovered: set[int] = set()  # a file's seq, once for all its destinations
        for entry in self.spool.recover(list(self.destinations)):
            self._tell(
                RouteEvent(
                    Step.RECOVERED,
                    entry.name,
                    entry.destination,
                    str(entry.path),
                    bytes=entry.size,
                    maybe_duplicate=entry.maybe_duplicate,
                )
            )
            if self.studies is not None and entry.seq not in recovered:
                recovered.add(entry.seq)
                self.studies.arrived(entry.study)
            self.forwarders[entry.destination].put(entry)
        if self.studies is not None:
            self.studies.start()
        if self.report_listener is not None:
            self.report_listener.__enter__()
        if self.spool.files:
            log.info("%d files waiting in the spool from an earlier run", self.spool.files)
        for forwarder in self.forwarders.values():
            forwarder.start()
        return True

    def stop(self, *, abort: bool = False, timeout: float | None = None) -> None:
        """Stop receiving (running associations finish, or are cut with ``abort``), then stop
        forwarding after the files in flight. Files waiting stay spooled. Idempotent; called
        again with ``abort`` while a graceful stop waits, it cuts what runs."""
        with self._lock:
            if self._stopped and not abort:
                return
            self._stopped = True
        self.server.shutdown(abort=abort, timeout=timeout)
        if self.studies is not None:
            self.studies.stop()
        for forwarder in self.forwarders.values():
            forwarder.stop(abort=abort)
        if self.report_listener is not None:
            self.report_listener.__exit__()
        self.journal.close()
        self.spool.close()

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(abort=exc is not None)

    # -- watching ----------------------------------------------------------------------------

    def stats(self) -> RouterStats:
        files, size, dropped, refused = self._received
        return RouterStats(
            received=files,
            received_bytes=size,
            dropped=dropped,
            refused=refused,
            spooled_files=self.spool.files,
            spooled_bytes=self.spool.bytes,
            journal_pending=self.journal.pending,
            journal_lost=self.journal.lost,
            destinations={
                name: DestinationStats(**vars(f.stats)) for name, f in self.forwarders.items()
            },
            rules=dict(self._by_rule),
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no file waits for any destination; False if ``timeout`` came first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while any(f.waiting for f in self.forwarders.values()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _study_complete(self, study: Study) -> None:
        self._tell(
            RouteEvent(
                Step.STUDY_COMPLETE,
                study.study_instance_uid,
                calling_ae=",".join(study.calling_aes) or None,
                series=study.series,
                instances=study.instances,
            )
        )
        if self.on_study_complete is not None:
            try:
                self.on_study_complete(study)
            except Exception:
                log.exception("on_study_complete raised on %s", study.study_instance_uid)

    def _study_ready(self) -> None:
        for forwarder in self.forwarders.values():
            if forwarder.complete is not None:
                forwarder.wake()

    def _wake(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _tell(self, event: RouteEvent) -> None:
        self.journal.write(event)
        if self.on_event is not None:
            # The step happened: a failing listener must not make it look undone.
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event raised on %s of %s", event.step, event.sop_instance_uid)

    # -- receiving ---------------------------------------------------------------------------

    @property
    def receiving(self) -> bool:
        """Started, and neither stopped nor stopping (ops, issue 19)."""
        return self._started and not self._stopped and not self.server.stopping

    def refusing(self) -> str | None:
        """Why new stores are answered 0xA700 now (the spool over ``max_spool``, free disk
        under ``min_free``), or None."""
        if self.max_spool is not None and self.spool.bytes >= self.max_spool:
            return f"spool over {self.max_spool} bytes"
        if self.min_free is not None:
            disk = os.statvfs(self.spool.directory)
            free = disk.f_bavail * disk.f_frsize
            if free < self.min_free:
                self.spool.drop_free()
                return f"free disk {free} bytes, under the minimum {self.min_free}"
        return None

    def _by_ae(self, calling_ae: str) -> list[int]:
        """The counts of ``calling_ae`` (with ``self._lock`` held)."""
        counts = self.by_calling_ae.get(calling_ae)
        if counts is None:
            if len(self.by_calling_ae) >= MAX_CALLING_AES:
                calling_ae = OTHER_AES
            counts = self.by_calling_ae.setdefault(calling_ae, [0, 0, 0])
        return counts

    def _before_store(
        self, sop_class_uid: str, sop_instance_uid: str, calling_ae: str
    ) -> int | None:
        reason = self.refusing()
        if reason is None:
            return None
        with self._lock:
            self._received[3] += 1
            self._by_ae(calling_ae)[2] += 1
        self._tell(
            RouteEvent(
                Step.REFUSED,
                sop_instance_uid,
                sop_class_uid=sop_class_uid,
                calling_ae=calling_ae,
                status=dimse.OUT_OF_RESOURCES,
                reason=reason,
            )
        )
        return dimse.OUT_OF_RESOURCES

    def _pick(self, received: Received) -> tuple[dict[str, str], str]:
        """The destinations of ``received``, each with the rule that picked it, and the rule
        that decided ('' without rules)."""
        if self.rules is not None:
            decision = self.rules.decide(received)
            with self._lock:
                self._by_rule[decision.rule] = self._by_rule.get(decision.rule, 0) + 1
            return decision.destinations, decision.rule
        if self.on_receive is None:
            return dict.fromkeys(self.destinations, ""), ""
        picked = self.on_receive(received) or ()
        names = [d.key if isinstance(d, Destination) else d for d in picked]
        unknown = [n for n in names if n not in self.destinations]
        if unknown:
            raise ValueError(f"on_receive picked unknown destinations: {unknown}")
        return dict.fromkeys(names, ""), ""

    def _pick_early(self, incoming: Incoming) -> set[str] | None:
        """The destinations of a file still being received, as the rules will pick them from
        its head; None when its head cannot tell (see ``Rules.decide_early``)."""
        assert self.rules is not None
        received = Received(
            path=None,
            data=None,
            sop_class_uid=incoming.sop_class_uid,
            sop_instance_uid=incoming.sop_instance_uid,
            transfer_syntax=incoming.transfer_syntax,
            calling_ae=incoming.calling_ae,
            called_ae=incoming.called_ae,
            size=0,
            association_id=0,
            message_id=0,
            address=incoming.address,
            head=incoming.head,
        )
        decision = self.rules.decide_early(received)
        return None if decision is None else set(decision.destinations)

    def _on_store(self, received: Received) -> int | None:
        path = received.path
        assert path is not None  # the server writes into the spool
        with self._lock:
            self._received[0] += 1
            self._received[1] += received.size
            counts = self._by_ae(received.calling_ae)
            counts[0] += 1
            counts[1] += received.size
        try:
            picked, rule = self._pick(received)
        except Exception:
            path.unlink()
            raise
        names = list(picked)
        if not names:
            path.unlink()
            with self._lock:
                self._received[2] += 1
            self._tell(self._event(Step.DROPPED, received, None, None, rule))
            return None
        identity = None
        if self.dataset_check and received.transfer_syntax in known_transfer_syntaxes():
            # The server checked the dataset's UIDs are the command's.
            identity = (
                received.sop_class_uid,
                received.sop_instance_uid,
                received.transfer_syntax,
                received.size,
            )
        # The study's spool name: it keeps a study in one lane, and names its queue entries.
        folder = study_folder(received.head, received.transfer_syntax)
        try:
            # The file is still at its temporary name (named_by_handler): its entries are named
            # as storage would have named it.
            name = self.storage.name(received.sop_class_uid, received.sop_instance_uid)
            entries = self.spool.enqueue(path, folder, names, identity, name)
        except OSError as exc:
            log.error("Cannot spool %s: %s", received.sop_instance_uid, exc)
            return dimse.OUT_OF_RESOURCES
        except ValueError as exc:  # a name storage should never have made: never retried
            log.error("Cannot spool %s: %s", received.sop_instance_uid, exc)
            return dimse.CANNOT_UNDERSTAND
        if self.studies is not None:  # before the files reach a lane that waits for it
            study, series = study_and_series(received.head, received.transfer_syntax)
            self.studies.arrived(folder, study, series, received.calling_ae)
        taken = {} if self.relay is None else self.relay.taken(path)
        for entry in entries:
            rule = picked[entry.destination]
            self._tell(
                self._event(Step.RECEIVED, received, entry.destination, str(entry.path), rule)
            )
            self.forwarders[entry.destination].put(entry, taken.get(entry.destination))
        log.info("Spooled %s for %s", received.sop_instance_uid, ", ".join(names))
        return None

    def _event(
        self,
        step: Step,
        received: Received,
        destination: str | None,
        path: str | None,
        rule: str = "",
    ) -> RouteEvent:
        return RouteEvent(
            step,
            received.sop_instance_uid,
            destination,
            path,
            received.sop_class_uid,
            received.calling_ae,
            bytes=received.size,
            rule=rule,
        )


def _own(destination: Destination, options: ForwardKeywords) -> ForwardKeywords:
    """The client options of ``destination``: the router's, with its own ``proposal``."""
    if destination.proposal is None:
        return options
    return {**options, "proposal": destination.proposal}
