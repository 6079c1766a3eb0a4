"""Queue control: hold and release a destination, retry its failed files, remove one queued or
failed entry, and read the status, three ways with the same answers:

- :class:`LiveControl`, inside a running router (what its HTTP endpoint calls);
- :class:`SpoolControl`, on the spool of a stopped router, under the spool's lock (so no
  router can start on it meanwhile);
- :class:`RemoteControl`, through a running router's HTTP endpoint (its address is in
  ``spool/http.json`` while it runs).

:func:`open_control` picks the one that works for a spool folder. Every change is journaled
(``held``, ``released``, ``requeued``, ``removed``) with who asked in ``by``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..receive.storage import fsync_folder
from .journal import Journal, RouteEvent, Step
from .ops import FailedIndex, RouterOps, queue_figures, read_held, write_held
from .spool import FAILED_LOG, HTTP_ADDRESS, JOURNAL, SENDING, Spool, SpoolBusy

log = logging.getLogger(__name__)


class ControlError(RuntimeError):
    """The control action cannot be done (``status``: the HTTP status it maps to)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Control(Protocol):
    def status(
        self, destination: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]: ...

    def hold(self, destination: str) -> dict[str, Any]: ...

    def release(self, destination: str) -> dict[str, Any]: ...

    def retry(self, destination: str) -> dict[str, Any]: ...

    def remove(self, destination: str, entry: str) -> dict[str, Any]: ...


def shell_user() -> str:
    """Who runs this process, for the journal: ``user@host pid N``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _entry_name(entry: str) -> str:
    name = entry.removesuffix(SENDING)
    if not name or "/" in name or name in (".", "..", FAILED_LOG):
        raise ControlError(f"{entry!r} is not an entry name", 400)
    return name


def _failed_files(folder: Path) -> list[Path]:
    with contextlib.suppress(FileNotFoundError):
        return sorted(
            p
            for p in folder.iterdir()
            if p.name != FAILED_LOG and p.is_file() and not p.is_symlink()
        )
    return []


def _uid(index: FailedIndex, destination: str, name: str) -> str:
    for record in index.entries(destination):
        if record["entry"] == name:
            return str(record["sop_instance_uid"] or name)
    return name


class LiveControl:
    """Control of a running router through its :class:`RouterOps`; ``by``: who asks."""

    def __init__(self, ops: RouterOps, by: str) -> None:
        self.ops = ops
        self.by = by

    def status(
        self, destination: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        if destination is not None:
            self.ops.forwarder(destination)
        return self.ops.status(
            failed_destination=destination, failed_offset=offset, failed_limit=limit
        )

    def hold(self, destination: str) -> dict[str, Any]:
        changed = self.ops.set_held(destination, True, self.by)
        return {"destination": destination, "held": True, "changed": changed}

    def release(self, destination: str) -> dict[str, Any]:
        changed = self.ops.set_held(destination, False, self.by)
        return {"destination": destination, "held": False, "changed": changed}

    def retry(self, destination: str) -> dict[str, Any]:
        forwarder = self.ops.forwarder(destination)
        spool = self.ops.router.spool
        index = self.ops.failed
        moved = 0
        for path in _failed_files(spool.failed / destination):
            uid = _uid(index, destination, path.name)
            try:
                entry = spool.requeue(path, destination)
            except (FileNotFoundError, ValueError) as exc:
                log.warning("Not requeued: %s", exc)
                continue
            forwarder.put(entry)
            moved += 1
            self.ops.tell(
                RouteEvent(
                    Step.REQUEUED,
                    uid,
                    destination,
                    str(entry.path),
                    bytes=entry.size,
                    by=self.by,
                )
            )
        index.invalidate()
        log.warning("%d failed files of %s queued again (asked by %s)", moved, destination, self.by)
        return {"destination": destination, "requeued": moved}

    def remove(self, destination: str, entry: str) -> dict[str, Any]:
        forwarder = self.ops.forwarder(destination)
        spool = self.ops.router.spool
        name = _entry_name(entry)
        failed = spool.failed / destination / name
        if failed.is_file():
            uid = _uid(self.ops.failed, destination, name)
            failed.unlink()
            fsync_folder(failed.parent)
            self.ops.failed.invalidate()
            where, path, size = "failed", failed, 0
        else:
            try:
                queued = forwarder.remove(name)
            except KeyError:
                message = f"{name} is neither queued nor failed for {destination}"
                raise ControlError(message, 404) from None
            except ValueError as exc:
                raise ControlError(str(exc)) from None
            with contextlib.suppress(FileNotFoundError):
                queued.path.unlink()
            spool.forget(queued)
            fsync_folder(queued.path.parent)
            where, path, size, uid = "queue", queued.path, queued.size, queued.name
        log.warning("Removed %s from %s's %s (asked by %s)", name, destination, where, self.by)
        self.ops.tell(RouteEvent(Step.REMOVED, uid, destination, str(path), bytes=size, by=self.by))
        return {"destination": destination, "entry": name, "removed_from": where}


class SpoolControl:
    """Control of a stopped router's spool, under its lock (a context manager). SpoolBusy
    when a router runs on it. ``destinations``: the names to accept (default: the folders
    under ``queue/`` and ``failed/``)."""

    def __init__(self, directory: str | Path, by: str | None = None) -> None:
        self.directory = Path(directory)
        if not (self.directory / "queue").is_dir():
            raise ControlError(f"{self.directory} is not a router's spool (no queue/)", 404)
        self.spool = Spool(self.directory)  # takes the lock, or SpoolBusy
        self.by = by or shell_user()
        self.journal = Journal(self.directory / JOURNAL)
        self.failed = FailedIndex(self.spool.failed, max_age=0.0)

    def __enter__(self) -> SpoolControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.journal.close()
        self.spool.close()

    def destinations(self) -> list[str]:
        names = {p.name for p in self.spool.queues.iterdir() if p.is_dir()}
        names |= set(self.failed.destinations())
        return sorted(names | read_held(self.directory))

    def _known(self, destination: str) -> str:
        if destination not in self.destinations():
            raise ControlError(f"no destination named {destination!r} in {self.directory}", 404)
        return destination

    def status(
        self, destination: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        if destination is not None:
            self._known(destination)
        held = read_held(self.directory)
        destinations = []
        for name in self.destinations():
            queued, age = queue_figures(self.spool.queues / name)
            destinations.append(
                {
                    "name": name,
                    "state": "held" if name in held else "stopped",
                    "held": name in held,
                    "queued": queued,
                    "oldest_age_seconds": None if age is None else round(age, 3),
                    "failed_files": len(self.failed.entries(name)),
                }
            )
        return {
            "router": {"receiving": False, "running": False},
            "spool": {"directory": str(self.directory)},
            "destinations": destinations,
            "failed": self.failed.page(destination, offset, limit),
        }

    def _hold(self, destination: str, held: bool) -> dict[str, Any]:
        self._known(destination)
        names = read_held(self.directory)
        changed = (destination in names) != held
        if changed:
            write_held(self.directory, names | {destination} if held else names - {destination})
            step = Step.HELD if held else Step.RELEASED
            self.journal.write(RouteEvent(step, "", destination, by=self.by))
        return {"destination": destination, "held": held, "changed": changed}

    def hold(self, destination: str) -> dict[str, Any]:
        return self._hold(destination, True)

    def release(self, destination: str) -> dict[str, Any]:
        return self._hold(destination, False)

    def retry(self, destination: str) -> dict[str, Any]:
        self._known(destination)
        moved = 0
        for path in _failed_files(self.spool.failed / destination):
            uid = _uid(self.failed, destination, path.name)
            try:
                entry = self.spool.requeue(path, destination)
            except (FileNotFoundError, ValueError) as exc:
                log.warning("Not requeued: %s", exc)
                continue
            moved += 1
            self.journal.write(
                RouteEvent(
                    Step.REQUEUED, uid, destination, str(entry.path), bytes=entry.size, by=self.by
                )
            )
        return {"destination": destination, "requeued": moved}

    def remove(self, destination: str, entry: str) -> dict[str, Any]:
        self._known(destination)
        name = _entry_name(entry)
        queue = self.spool.queues / destination
        for path, where in (
            (self.spool.failed / destination / name, "failed"),
            (queue / name, "queue"),
            (queue / (name + SENDING), "queue"),
        ):
            if path.is_file():
                uid = _uid(self.failed, destination, name) if where == "failed" else name
                size = path.stat().st_size
                path.unlink()
                fsync_folder(path.parent)
                self.journal.write(
                    RouteEvent(Step.REMOVED, uid, destination, str(path), bytes=size, by=self.by)
                )
                return {"destination": destination, "entry": name, "removed_from": where}
        raise ControlError(f"{name} is neither queued nor failed for {destination}", 404)


class RemoteControl:
    """Control through a running router's HTTP endpoint ``url`` (``http://host:port``);
    ``token``: the bearer token when it asks for one."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"X-Fastpush-By": shell_user()}
        data = None
        if body is not None or method == "POST":
            data = json.dumps(body or {}).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise ControlError(str(message), exc.code) from None

    @staticmethod
    def _quote(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def status(
        self, destination: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        query: dict[str, Any] = {"failed_offset": offset, "failed_limit": limit}
        if destination is not None:
            query["destination"] = destination
        return self._call("GET", "/api/status?" + urllib.parse.urlencode(query))

    def _act(self, destination: str, action: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", f"/api/destinations/{self._quote(destination)}/{action}", body)

    def hold(self, destination: str) -> dict[str, Any]:
        result: dict[str, Any] = self._act(destination, "hold")
        return result

    def release(self, destination: str) -> dict[str, Any]:
        result: dict[str, Any] = self._act(destination, "release")
        return result

    def retry(self, destination: str) -> dict[str, Any]:
        result: dict[str, Any] = self._act(destination, "retry")
        return result

    def remove(self, destination: str, entry: str) -> dict[str, Any]:
        result: dict[str, Any] = self._act(destination, "remove", {"entry": entry})
        return result


def write_address(spool: Path, url: str) -> None:
    """Tell the shell where the running router's HTTP endpoint is (``spool/http.json``)."""
    temporary = spool / (HTTP_ADDRESS + ".new")
    temporary.write_text(json.dumps({"url": url, "pid": os.getpid(), "time": time.time()}))
    os.rename(temporary, spool / HTTP_ADDRESS)


def clear_address(spool: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (spool / HTTP_ADDRESS).unlink()


def open_control(
    directory: str | Path, *, token: str | None = None
) -> SpoolControl | RemoteControl:
    """The control of the router owning the spool ``directory``: on the spool itself when no
    router runs on it, else through the running router's HTTP endpoint. ControlError when a
    router runs without one."""
    directory = Path(directory)
    try:
        return SpoolControl(directory)
    except SpoolBusy:
        pass
    try:
        url = json.loads((directory / HTTP_ADDRESS).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ControlError(
            f"a router runs on {directory} without an HTTP endpoint: restart it with --http "
            "to control it while it runs, or stop it",
            409,
        ) from None
    return RemoteControl(str(url), token)
