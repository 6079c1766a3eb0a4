"""The router's HTTP endpoint (``route --http [HOST:]PORT``): a small threaded server beside the
DICOM port, for monitoring and operators.

=================================================  ===============================================
``GET /metrics``                                   Prometheus text (see :mod:`.metrics`)
``GET /healthz``                                   200 ``ok``, or 503 and the reason (never needs
                                                   the token)
``GET /readyz``                                    200 while the DICOM port is served, else 503
``GET /api/status``                                the status document; ``?destination=NAME``,
                                                   ``failed_offset``, ``failed_limit`` page the
                                                   failed entries
``POST /api/destinations/NAME/hold|release|retry`` control (JSON body, may be ``{}``)
``POST /api/destinations/NAME/remove``             ``{"entry": ENTRY}``: one queued or failed entry
``GET /``, ``/static/*``                           the status page (static files, no data)
=================================================  ===============================================

Bound to 127.0.0.1 unless a host is given. Bound to any other address, it needs a bearer token
(``token``): every request for data or control carries ``Authorization: Bearer TOKEN``; only
``/healthz`` and the page's static files (which hold no data; the page asks for the token) do
without. Without a token, only requests whose ``Host`` names the loopback are answered (a web
page that rebinds its DNS name to 127.0.0.1 cannot read or control the router), and control
needs a JSON body (``Content-Type: application/json``), which a cross-origin page cannot send
without a preflight this server never allows. Every change is journaled with the client's
address (and the ``X-Fastpush-By`` header the shell sends).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ..logtext import peer_text
from .control import ControlError, LiveControl, clear_address, write_address
from .metrics import Metrics
from .ops import RouterOps

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_ACTION = re.compile(r"/api/destinations/([^/]+)/(hold|release|retry|remove)")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
}
_MAX_BODY = 64 * 1024


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(text: str) -> tuple[str | None, int]:
    """``[HOST:]PORT`` (``[::1]:PORT`` for IPv6) as (host or None, port). ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: give [HOST:]PORT with a port 0-65535")
    return (host.strip("[]") or None), int(port)


class OpsServer:
    """Serves ``ops`` over HTTP on ``host:port`` (host None: 127.0.0.1; port 0: any free).

    ValueError when bound beyond the loopback without ``token``. ``start()`` serves in a
    background thread and writes the address to ``spool/http.json`` for the shell; ``stop()``
    stops and removes it.
    """

    def __init__(
        self, ops: RouterOps, port: int, *, host: str | None = None, token: str | None = None
    ) -> None:
        host = host or LOOPBACK
        if not is_loopback(host) and not token:
            raise ValueError(
                f"the HTTP endpoint on {host} needs a token (--http-token-file): only the "
                "loopback is served without one"
            )
        self.ops = ops
        self.token = token
        self.metrics = Metrics(ops)
        self.page = resources.files("fastpush.route") / "static"
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        bound = self._httpd.server_address
        self.host, self.port = str(bound[0]), int(bound[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = LOOPBACK if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> OpsServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"fastpush-http-{self.port}", daemon=True
        )
        self._thread.start()
        write_address(self.ops.router.spool.directory, self.url)
        log.info("HTTP endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        clear_address(self.ops.router.spool.directory)
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpsServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "fastpush"

    # -- plumbing ----------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), peer_text(format % args))

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="fastpush"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    @property
    def _owner(self) -> OpsServer:
        return self.server.owner

    def _allowed(self, path: str) -> bool:
        """The token rule (and, without one, the loopback Host rule); answers when not."""
        if path == "/healthz":
            return True
        token = self._owner.token
        if token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if not is_loopback(host.strip("[]")):
                self._error(HTTPStatus.FORBIDDEN, "only loopback host names are served")
                return False
            return True
        if path in _STATIC:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            self._error(HTTPStatus.UNAUTHORIZED, "a bearer token is needed")
            return False
        return True

    def _by(self) -> str:
        address = f"{self.client_address[0]}:{self.client_address[1]}"
        via = peer_text(self.headers.get("X-Fastpush-By", ""), 100)
        return f"{address} ({via})" if via else address

    # -- requests ----------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if not self._allowed(path):
            return
        ops = self._owner.ops
        try:
            if path == "/metrics":
                owner = self._owner
                self._send(HTTPStatus.OK, owner.metrics.render(), owner.metrics.content_type)
            elif path == "/healthz":
                reason = ops.health()
                if reason is None:
                    self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
                else:
                    body = f"{reason}\n".encode()
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, body, "text/plain; charset=utf-8")
            elif path == "/readyz":
                ready = ops.ready()
                status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                body = b"ready\n" if ready else b"not serving the DICOM port\n"
                self._send(status, body, "text/plain; charset=utf-8")
            elif path == "/api/status":
                query = urllib.parse.parse_qs(url.query)
                destination = query.get("destination", [None])[0]
                offset = int(query.get("failed_offset", ["0"])[0])
                limit = int(query.get("failed_limit", ["50"])[0])
                control = LiveControl(ops, self._by())
                self._json(HTTPStatus.OK, control.status(destination, offset, limit))
            elif path in _STATIC:
                name, content_type = _STATIC[path]
                body = (self._owner.page / name).read_bytes()
                self._send(HTTPStatus.OK, body, content_type)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except KeyError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc.args[0]) if exc.args else "not found")
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if not self._allowed(path):
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
            return
        body = self.rfile.read(length) if length else b""
        match = _ACTION.fullmatch(path)
        if match is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such action: {path}")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "control takes a JSON body")
            return
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad JSON: {exc}")
            return
        destination, action = urllib.parse.unquote(match[1]), match[2]
        control = LiveControl(self._owner.ops, self._by())
        try:
            if action == "remove":
                entry = data.get("entry")
                if not isinstance(entry, str):
                    raise ControlError('give the entry to remove: {"entry": NAME}', 400)
                result = control.remove(destination, entry)
            else:
                result = getattr(control, action)(destination)
        except KeyError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc.args[0]) if exc.args else "not found")
            return
        except ControlError as exc:
            self._error(exc.status, str(exc))
            return
        except OSError as exc:
            log.error("%s %s failed: %s", action, destination, exc)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{action} failed: {exc}")
            return
        self._json(HTTPStatus.OK, result)
