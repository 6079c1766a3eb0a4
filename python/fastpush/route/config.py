"""The router's config file (TOML): what ``route --config`` and ``--check-config`` read.

``load(path)`` turns the file into a :class:`RouteConfig` (receiving side, forwarding defaults,
destinations with their edits and de-identification as validated plain data, rules), or raises
one :class:`ConfigError` naming the key and its line: TOML gives line numbers for syntax only,
so the line of a key whose value is wrong is found by scanning the text. The keys are listed in
the README ("The config file"); defaults are the command line's.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom._uid_dict import UID_dictionary

from ..wire.pdu import encode_ae_title
from .rules import Rule, RuleError, Rules, element_tag

if TYPE_CHECKING:
    from ..dataset.edits import EditPlan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

Key = tuple[str | int, ...]
Check = Callable[[Any, Key], Any]


class ConfigError(ValueError):
    """A config file that cannot be used: ``str()`` is one line with the file, the line, the
    key and what is wrong."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.line, self.key = line, key


@dataclass(frozen=True)
class Receive:
    """``[receive]``: the receiving side (``max_spool``, ``min_free`` in GB)."""

    port: int | None = None
    host: str = ""
    ae_title: str = "FASTPUSH"
    spool: str = "spool"
    max_spool: float | None = None
    min_free: float | None = None
    max_associations: int = 64
    max_connections: int | None = None
    timeout: float = 60.0
    acse_timeout: float = 30.0
    promiscuous: bool = False
    dataset_check: bool = True
    tls: Tls | None = None
    http: str | None = None
    http_token_file: str | None = None
    durability: str = "fsync"
    journal_max: float = 100.0
    """MB past which the journal is rotated."""
    study_stable: float | None = None


@dataclass(frozen=True)
class Tls:
    """A ``tls`` table: ``ca``, ``cert``, ``key`` files and ``no_verify`` (client side)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    no_verify: bool = False


@dataclass(frozen=True)
class Forward:
    """``[forward]``: what every destination gets unless it says otherwise."""

    associations: int = 2
    retries: int = 3
    max_backoff: float = 60.0
    calling_ae: str | None = None
    idle_release: float = 30.0
    commit_timeout: float = 60.0
    commit_port: int | None = None
    cut_through: float = 8.0
    """MB past which a file is forwarded while it arrives (0: never; see ``route.relay``)."""


@dataclass(frozen=True)
class Edit:
    """One edit of a destination, as the file gives it: ``kind`` is ``set``, ``remove``,
    ``copy``, ``prefix`` or ``map_uids``; ``element`` the keyword or tag edited (a dotted path
    for nested ones), ``value`` the value set or prefixed, ``source`` the element copied,
    ``key_file`` the key of ``map_uids`` (else the destination's ``deidentify`` key)."""

    kind: str
    element: str = ""
    value: str | None = None
    source: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Deidentify:
    """A destination's de-identification: the PS3.15 Annex E ``profile`` and its options."""

    profile: str
    key_file: str
    options: tuple[str, ...] = ()
    keep_private: tuple[str, ...] = ()
    allow_burned_in: bool = False


@dataclass(frozen=True)
class DestinationConfig:
    """``[destinations.NAME]``."""

    name: str
    host: str
    port: int
    called_ae: str = "ANY-SCP"
    tls: Tls | None = None
    associations: int | None = None
    retries: int | None = None
    max_backoff: float | None = None
    prefer: tuple[str, ...] = ()
    conversion: bool = True
    edits: tuple[Edit, ...] = ()
    deidentify: Deidentify | None = None
    study_complete: bool = False
    commit: bool = False
    line: int = 0


@dataclass(frozen=True)
class RouteConfig:
    """A whole config file."""

    receive: Receive = field(default_factory=Receive)
    forward: Forward = field(default_factory=Forward)
    destinations: tuple[DestinationConfig, ...] = ()
    rules: tuple[Rule, ...] = ()
    first_match: bool = True
    unmatched: tuple[str, ...] = ()
    rule_lines: tuple[int, ...] = ()
    path: str = ""
    """The file it came from."""

    def routing(self) -> Rules | None:
        """The rules as the router takes them; None without rules (every file to every
        destination)."""
        if not self.rules:
            return None
        return Rules(self.rules, first_match=self.first_match, unmatched=self.unmatched)


EDIT_KINDS = ("set", "remove", "copy", "prefix", "map_uids")
PROFILES = ("basic",)
DEIDENTIFY_OPTIONS = (
    "retain_uids",
    "retain_longitudinal_temporal",
    "retain_patient_characteristics",
    "retain_device_identity",
    "clean_descriptors",
)
_PLAN_OPTIONS = {"retain_longitudinal_temporal": "retain_dates"}
"""The config's option names that the edits engine spells otherwise."""
_TOP = ("receive", "forward", "destinations", "rules", "routing")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def load(path: str | Path) -> RouteConfig:
    """Read and check the config file at ``path``; :class:`ConfigError` when it cannot be
    used (``OSError`` when it cannot be read)."""
    text = Path(path).read_text(encoding="utf-8")
    return parse(text, str(path))


def parse(text: str, path: str = "<config>") -> RouteConfig:
    """Check the config ``text`` (``path`` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(path, int(found.group(1)) if found else 0, "", message) from None
    return _Reader(text, path).read(data)


class _Reader:
    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path

    def fail(self, key: Key, message: str) -> ConfigError:
        return ConfigError(self.path, line_of(self.lines, key), _name(key), message)

    # -- values ------------------------------------------------------------------------------

    def table(self, value: Any, key: Key, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table")
        for name in value:
            if name not in allowed:
                raise self.fail((*key, name), f"unknown key (known here: {', '.join(allowed)})")
        return value

    def text(self, value: Any, key: Key) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be text, not {_kind(value)}")
        return value

    def texts(self, value: Any, key: Key) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be text or a list of texts")
        return tuple(value)

    def flag(self, value: Any, key: Key) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_kind(value)}")
        return value

    def whole(self, value: Any, key: Key, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, not {_kind(value)}")
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f"at least {low}"
            raise self.fail(key, f"{value} is out of range ({allowed})")
        return value

    def positive(self, value: Any, key: Key) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, not {_kind(value)}")
        if not 0 < value < float("inf"):
            raise self.fail(key, f"{value} is not a positive number")
        return float(value)

    def ae(self, value: Any, key: Key) -> str:
        title = self.text(value, key)
        try:
            encode_ae_title(title)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        return title

    def tls(self, value: Any, key: Key, client: bool) -> Tls | None:
        if isinstance(value, bool) and client:
            return Tls() if value else None
        allowed = ("ca", "cert", "key", "no_verify") if client else ("ca", "cert", "key")
        table = self.table(value, key, allowed)
        files = {k: self.text(v, (*key, k)) for k, v in table.items() if k != "no_verify"}
        tls = Tls(**files, no_verify=self.flag(table.get("no_verify", False), (*key, "no_verify")))
        if not client and (tls.cert is None or tls.key is None):
            raise self.fail(key, "receiving with TLS needs cert and key")
        return tls

    # -- sections ----------------------------------------------------------------------------

    def read(self, data: Mapping[str, Any]) -> RouteConfig:
        self.table(data, (), _TOP)
        listed = data.get("destinations", {})
        if not isinstance(listed, Mapping):
            raise self.fail(("destinations",), "must be tables: [destinations.NAME]")
        destinations = tuple(self.destination(name, value) for name, value in listed.items())
        names = {d.name for d in destinations}
        routing = self.table(data.get("routing", {}), ("routing",), ("first_match", "unmatched"))
        unmatched: tuple[str, ...] = ()
        if "unmatched" in routing:
            unmatched = self.texts(routing["unmatched"], ("routing", "unmatched"))
            if unmatched == ("drop",):
                unmatched = ()
            for name in unmatched:
                if name not in names:
                    raise self.fail(
                        ("routing", "unmatched"), f"{name!r} is not a destination (or 'drop')"
                    )
        rules = data.get("rules", [])
        if not isinstance(rules, list):
            raise self.fail(("rules",), "must be an array of tables: [[rules]]")
        read = [self.rule(n, value, names) for n, value in enumerate(rules)]
        return RouteConfig(
            receive=self.receive(data.get("receive", {})),
            forward=self.forward(data.get("forward", {})),
            destinations=destinations,
            rules=tuple(read),
            first_match=self.flag(routing.get("first_match", True), ("routing", "first_match")),
            unmatched=unmatched,
            rule_lines=tuple(line_of(self.lines, ("rules", n)) for n in range(len(read))),
            path=self.path,
        )

    def receive(self, value: Any) -> Receive:
        key: Key = ("receive",)
        table = self.table(value, key, [f.name for f in fields(Receive)])
        checks: dict[str, Check] = {
            "port": lambda v, k: self.whole(v, k, 1, 65535),
            "host": self.text,
            "ae_title": self.ae,
            "spool": self.text,
            "max_spool": self.positive,
            "min_free": self.positive,
            "max_associations": lambda v, k: self.whole(v, k, 1),
            "max_connections": lambda v, k: self.whole(v, k, 1),
            "timeout": self.positive,
            "acse_timeout": self.positive,
            "promiscuous": self.flag,
            "dataset_check": self.flag,
            "tls": lambda v, k: self.tls(v, k, client=False),
            "http": self.text,
            "http_token_file": self.text,
            "durability": self.durability,
            "journal_max": self.positive,
            "study_stable": self.positive,
        }
        return Receive(**{k: checks[k](v, (*key, k)) for k, v in table.items()})

    def durability(self, value: Any, key: Key) -> str:
        if value not in ("fsync", "os"):
            raise self.fail(key, f"{value!r} is not fsync or os")
        return str(value)

    def forward(self, value: Any) -> Forward:
        key: Key = ("forward",)
        table = self.table(value, key, [f.name for f in fields(Forward)])
        checks: dict[str, Check] = {
            "associations": lambda v, k: self.whole(v, k, 1),
            "retries": lambda v, k: self.whole(v, k, 0),
            "max_backoff": self.positive,
            "calling_ae": self.ae,
            "idle_release": self.positive,
            "commit_timeout": self.positive,
            "commit_port": lambda v, k: self.whole(v, k, 1, 65535),
            "cut_through": lambda v, k: 0.0 if v == 0 else self.positive(v, k),
        }
        return Forward(**{k: checks[k](v, (*key, k)) for k, v in table.items()})

    def destination(self, name: str, value: Any) -> DestinationConfig:
        key: Key = ("destinations", name)
        allowed = [f.name for f in fields(DestinationConfig) if f.name not in ("name", "line")]
        table = self.table(value, key, allowed)
        for required in ("host", "port"):
            if required not in table:
                raise self.fail(key, f"needs {required}")
        checks: dict[str, Check] = {
            "host": self.text,
            "port": lambda v, k: self.whole(v, k, 1, 65535),
            "called_ae": self.ae,
            "tls": lambda v, k: self.tls(v, k, client=True),
            "associations": lambda v, k: self.whole(v, k, 1),
            "retries": lambda v, k: self.whole(v, k, 0),
            "max_backoff": self.positive,
            "prefer": self.syntaxes,
            "conversion": self.flag,
            "edits": self.edits,
            "deidentify": self.deidentify,
            "study_complete": self.flag,
            "commit": self.flag,
        }
        values = {k: checks[k](v, (*key, k)) for k, v in table.items()}
        for n, edit in enumerate(values.get("edits", ())):
            if edit.kind == "map_uids" and edit.key_file is None and "deidentify" not in values:
                raise self.fail((*key, "edits", n), "map_uids needs key_file (or deidentify's)")
        return DestinationConfig(name=name, line=line_of(self.lines, key), **values)

    def syntaxes(self, value: Any, key: Key) -> tuple[str, ...]:
        by_keyword = {entry[4]: uid for uid, entry in UID_dictionary.items()}
        found = []
        for n, text in enumerate(self.texts(value, key)):
            uid = by_keyword.get(text, text)
            if not _UID.fullmatch(uid):
                raise self.fail((*key, n), f"{text!r} is neither a UID nor a syntax keyword")
            found.append(uid)
        return tuple(found)

    def element(self, value: Any, key: Key) -> str:
        text = self.text(value, key)
        for part in text.split("."):
            try:
                element_tag(part)
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
        return text

    def edits(self, value: Any, key: Key) -> tuple[Edit, ...]:
        if not isinstance(value, list):
            raise self.fail(key, 'must be a list of edits, e.g. [{ remove = "PatientName" }]')
        edits = []
        for n, item in enumerate(value):
            at: Key = (*key, n)
            table = self.table(item, at, (*EDIT_KINDS, "value", "from", "key_file"))
            kinds = [k for k in EDIT_KINDS if k in table]
            if len(kinds) != 1:
                raise self.fail(at, f"give one of {', '.join(EDIT_KINDS)}")
            kind = kinds[0]
            needs = {"set": ("value",), "prefix": ("value",), "copy": ("from",)}.get(kind, ())
            optional = ("key_file",) if kind == "map_uids" else ()
            for extra in set(table) - {kind, *needs, *optional}:
                raise self.fail((*at, extra), f"does not go with {kind}")
            for need in needs:
                if need not in table:
                    raise self.fail(at, f"{kind} needs {need}")
            if kind == "map_uids":
                if table[kind] is not True:
                    raise self.fail((*at, kind), "must be true")
                key_file = table.get("key_file")
                edits.append(
                    Edit(
                        kind,
                        key_file=None
                        if key_file is None
                        else self.text(key_file, (*at, "key_file")),
                    )
                )
                continue
            edits.append(
                Edit(
                    kind,
                    self.element(table[kind], (*at, kind)),
                    value=self.text(table["value"], (*at, "value")) if "value" in needs else None,
                    source=self.element(table["from"], (*at, "from")) if "from" in needs else None,
                )
            )
        return tuple(edits)

    def deidentify(self, value: Any, key: Key) -> Deidentify:
        allowed = ("profile", "key_file", "options", "keep_private", "allow_burned_in")
        table = self.table(value, key, allowed)
        profile = self.text(table.get("profile", "basic"), (*key, "profile"))
        if profile not in PROFILES:
            raise self.fail(
                (*key, "profile"), f"{profile!r} is not a profile ({', '.join(PROFILES)})"
            )
        if "key_file" not in table:
            raise self.fail(key, "needs key_file (the secret key is read from a file)")
        options = self.texts(table.get("options", []), (*key, "options"))
        for option in options:
            if option not in DEIDENTIFY_OPTIONS:
                raise self.fail(
                    (*key, "options"),
                    f"{option!r} is not an option ({', '.join(DEIDENTIFY_OPTIONS)})",
                )
        return Deidentify(
            profile,
            self.text(table["key_file"], (*key, "key_file")),
            options,
            self.texts(table.get("keep_private", []), (*key, "keep_private")),
            self.flag(table.get("allow_burned_in", False), (*key, "allow_burned_in")),
        )

    def rule(self, n: int, value: Any, destinations: set[str]) -> Rule:
        key: Key = ("rules", n)
        table = self.table(value, key, ("match", "to", "drop", "name"))
        match = self.table(table.get("match", {}), (*key, "match"), list(table.get("match", {})))
        to = self.texts(table.get("to", []), (*key, "to"))
        for name in to:
            if name not in destinations:
                raise self.fail((*key, "to"), f"{name!r} is not a destination")
        drop = self.flag(table.get("drop", False), (*key, "drop"))
        name = self.text(table.get("name", ""), (*key, "name"))
        try:
            return Rule(match=dict(match), to=to, drop=drop, name=name)
        except RuleError as exc:
            raise self.fail((*key, "match", exc.key), exc.message) from None
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None


def edit_plan(edits: Sequence[Edit], deidentify: Deidentify | None) -> EditPlan | None:
    """A destination's edits and de-identification as the plan its forwarder applies (None:
    neither). The key file is read when the plan compiles."""
    from ..dataset import edits as engine

    if not edits and deidentify is None:
        return None
    parsed: list[engine.Edit] = []
    key_file = None if deidentify is None else deidentify.key_file
    for e in edits:
        if e.kind == "map_uids":
            parsed.append(engine.MapUids())
            key_file = e.key_file or key_file
        elif e.kind == "set":
            parsed.append(engine.Set(e.element, e.value or ""))
        elif e.kind == "remove":
            parsed.append(engine.Remove(e.element))
        elif e.kind == "copy":
            parsed.append(engine.Copy(e.element, e.source or ""))
        else:
            parsed.append(engine.Prefix(e.element, e.value or ""))
    deid = None
    if deidentify is not None:
        flags = {_PLAN_OPTIONS.get(o, o): True for o in deidentify.options}
        deid = engine.Deidentify(
            keep_private=deidentify.keep_private,
            allow_burned_in=deidentify.allow_burned_in,
            **flags,
        )
    return engine.EditPlan(tuple(parsed), deid, key_file)


def plan_of(data: Mapping[str, Any], where: str = "edits") -> EditPlan | None:
    """``{"edits": [...], "deidentify": {...}}`` written as a config file's destination writes
    them, checked as the file is (``ConfigError`` naming ``where``), as a plan."""
    reader = _Reader("", where)
    table = reader.table(data, (), ("edits", "deidentify"))
    edits = reader.edits(table["edits"], ("edits",)) if "edits" in table else ()
    deid = table.get("deidentify")
    return edit_plan(edits, None if deid is None else reader.deidentify(deid, ("deidentify",)))


def _kind(value: Any) -> str:
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _name(key: Key) -> str:
    """``destinations.pacs.port``, ``rules[1].match.Modality``."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out


# -- finding a key's line ----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", dotted)]


def line_of(lines: Sequence[str], key: Key) -> int:
    """The line (from 1) that best shows ``key``: the deepest table header or assignment on the
    way to it (an element of an inline table or array is shown by its parent's line); 0 when
    the key is not written (a default)."""
    target = [str(p) for p in key]
    best, best_depth = 0, -1
    table: list[str] = []
    arrays: dict[tuple[str, ...], int] = {}
    in_string = False
    for number, line in enumerate(lines, 1):
        if line.count('"""') % 2:
            in_string = not in_string
            continue
        if in_string:
            continue
        header = _HEADER.match(line)
        if header is not None:
            path = _parts(header.group(2))
            if header.group(1) == "[[":
                index = arrays.get(tuple(path), -1) + 1
                arrays[tuple(path)] = index
                path = [*path, str(index)]
            table = path
            depth = _common(table, target)
            if depth == len(table) and depth > best_depth:
                best, best_depth = number, depth
            continue
        assign = _ASSIGN.match(line)
        if assign is not None:
            path = [*table, *_parts(assign.group(1))]
            depth = _common(path, target)
            if depth == len(path) and depth > best_depth:
                best, best_depth = number, depth
    return best


def _common(path: Sequence[str], target: Sequence[str]) -> int:
    n = 0
    for a, b in zip(path, target, strict=False):
        if a != b:
            break
        n += 1
    return n
