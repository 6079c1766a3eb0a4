"""``route --config FILE`` and ``route --check-config FILE``: the router's options from a
config file (``fastpush.route.config``), the command line's given ones winning.

The options a file can set have no parser default here (None means "not given"); their
defaults are the config's (``Receive``, ``Forward``), so a run without a file gets the same
values as before. ``--to`` replaces the file's destinations and rules (every file to every
``--to``); ``--to-tls``/``--to-tls-ca`` replace each destination's TLS.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..dataset.edits import EditPlan
    from ..route.config import DestinationConfig, RouteConfig, Tls
    from ..route.forwarder import Destination
    from ..route.rules import Rules
    from ..transport.tls import TLSOptions

# Option dest: (config section, key). Flags count as given when set.
_OPTIONS = {
    "port": ("receive", "port"),
    "host": ("receive", "host"),
    "aetitle": ("receive", "ae_title"),
    "spool": ("receive", "spool"),
    "max_spool": ("receive", "max_spool"),
    "min_free": ("receive", "min_free"),
    "max_associations": ("receive", "max_associations"),
    "max_connections": ("receive", "max_connections"),
    "timeout": ("receive", "timeout"),
    "acse_timeout": ("receive", "acse_timeout"),
    "http_token_file": ("receive", "http_token_file"),
    "durability": ("receive", "durability"),
    "journal_max": ("receive", "journal_max"),
    "study_stable": ("receive", "study_stable"),
    "idle_release": ("forward", "idle_release"),
    "commit_timeout": ("forward", "commit_timeout"),
    "commit_port": ("forward", "commit_port"),
    "cut_through": ("forward", "cut_through"),
    "associations": ("forward", "associations"),
    "retries": ("forward", "retries"),
    "max_backoff": ("forward", "max_backoff"),
}
_FLAGS = {"promiscuous": True, "dataset_check": False}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--check-config``; the file-settable options lose their defaults."""
    group = parser.add_argument_group("config file (see the README's 'The config file')")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read the receiving side, destinations, rules and edits from this TOML file "
        "(options given here win)",
    )
    group.add_argument(
        "--check-config",
        type=Path,
        metavar="FILE",
        help="check FILE, print the effective routing table and exit (2: a bad file)",
    )
    parser.set_defaults(**dict.fromkeys(_OPTIONS))


@dataclass
class Settled:
    """What the router runs with."""

    destinations: list[Destination]
    rules: Rules | None
    calling_ae: str | None
    config: RouteConfig


def settle(args: argparse.Namespace) -> Settled:
    """Fill ``args`` from the config file (or the defaults) where the command line gave
    nothing, and build the destinations and rules. ``ConfigError`` (a ``ValueError``, one
    line) for a file that cannot be used, before anything binds."""
    from ..route.config import RouteConfig, load
    from ..route.forwarder import Destination
    from ..transport.tls import TLSOptions

    path = args.check_config or args.config
    config = load(path) if path is not None else RouteConfig()
    for dest, (section, key) in _OPTIONS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, getattr(getattr(config, section), key))
    for dest, given in _FLAGS.items():
        if getattr(args, dest) != given:
            setattr(args, dest, getattr(config.receive, dest))
    args.spool = Path(args.spool)
    receive_tls = config.receive.tls
    if receive_tls is not None and not (args.tls_cert or args.tls_key or args.tls_ca):
        args.tls_cert, args.tls_key, args.tls_ca = receive_tls.cert, receive_tls.key, receive_tls.ca
    if args.http is None and config.receive.http is not None:
        from ..route.http import parse_address

        args.http = parse_address(config.receive.http)
    if args.http_token_file is not None:
        args.http_token_file = Path(args.http_token_file)
    if args.port is None:
        raise ValueError("give the port to listen on (PORT, or port in the config's [receive])")
    cli_tls = TLSOptions(ca_file=args.to_tls_ca) if args.to_tls or args.to_tls_ca else None
    if args.to:
        destinations = [
            Destination(host, port, ae, tls=cli_tls, study_complete=whole)
            for host, port, ae, whole in args.to
        ]
        if args.study_stable is None and any(d.study_complete for d in destinations):
            raise ValueError("--whole-studies needs --study-stable S")
        return Settled(destinations, None, config.forward.calling_ae, config)
    if not config.destinations:
        raise ValueError("give destinations: --to HOST PORT, or [destinations.NAME] in --config")
    built = [_destination(d, cli_tls, config) for d in config.destinations]
    return Settled(built, config.routing(), config.forward.calling_ae, config)


def _destination(
    d: DestinationConfig, cli_tls: TLSOptions | None, config: RouteConfig
) -> Destination:
    from ..route.forwarder import Destination
    from ..send.plan import Proposal
    from ..send.retry import RetryPolicy

    retry = None
    if d.retries is not None or d.max_backoff is not None:
        retry = RetryPolicy(
            retries=3 if d.retries is None else d.retries,
            max_backoff=60.0 if d.max_backoff is None else d.max_backoff,
        )
    proposal = None
    if d.prefer or not d.conversion:
        proposal = Proposal(conversion=d.conversion, prefer=d.prefer)
    return Destination(
        d.host,
        d.port,
        d.called_ae,
        name=d.name,
        tls=cli_tls or _tls(d.tls),
        associations=d.associations,
        retry=retry,
        proposal=proposal,
        study_complete=d.study_complete,
        commit=d.commit,
        edits=_plan(d, config),
    )


def _plan(d: DestinationConfig, config: RouteConfig) -> EditPlan | None:
    """The destination's edits, compiled with their key read now: a key that cannot be used
    is the config's error, before anything binds."""
    from ..route.config import ConfigError, edit_plan, line_of

    plan = edit_plan(d.edits, d.deidentify)
    if plan is None:
        return None
    try:
        plan.compiled  # noqa: B018
    except (OSError, ValueError) as exc:
        if d.deidentify is not None and plan.key_file == d.deidentify.key_file:
            key: tuple[str | int, ...] = ("destinations", d.name, "deidentify", "key_file")
        else:
            n = next(n for n, e in enumerate(d.edits) if e.kind == "map_uids")
            key = ("destinations", d.name, "edits", n, "key_file")
        lines = Path(config.path).read_text(encoding="utf-8").splitlines() if config.path else []
        reason = f"cannot read {plan.key_file}: {exc.strerror}" if isinstance(exc, OSError) else exc
        raise ConfigError(
            config.path, line_of(lines, key), ".".join(map(str, key)), str(reason)
        ) from None
    return plan


def _tls(tls: Tls | None) -> TLSOptions | None:
    from ..transport.tls import TLSOptions

    if tls is None:
        return None
    return TLSOptions(tls.ca, tls.cert, tls.key, tls.no_verify)


def table(args: argparse.Namespace, settled: Settled) -> list[str]:
    """The effective routing table, as ``--check-config`` prints it."""
    tls = "TLS" if args.tls_cert else "no TLS"
    lines = [
        f"Receive: port {args.port} on {args.host or 'all addresses'}, AE {args.aetitle}, "
        f"{tls}; spool {args.spool}",
        f"  limits: {args.max_associations} associations, "
        f"{args.max_connections or 'default'} connections, timeout {args.timeout:g} s, "
        f"ACSE timeout {args.acse_timeout:g} s, max spool "
        f"{_gb(args.max_spool)}, min free {_gb(args.min_free)}",
        f"Forward: {args.associations} associations, {args.retries} retries, "
        f"max backoff {args.max_backoff:g} s"
        + (f", calling AE {settled.calling_ae}" if settled.calling_ae else ""),
        "Destinations:",
    ]
    configured = {d.name: d for d in settled.config.destinations}
    for d in settled.destinations:
        line = f"  {d.key}: {d.called_ae}@{d.host}:{d.port}"
        extras = []
        if d.tls is not None:
            extras.append("TLS")
        if d.associations:
            extras.append(f"{d.associations} associations")
        if d.retry is not None:
            extras.append(f"{d.retry.retries} retries")
        if d.study_complete:
            extras.append("whole studies")
        if d.proposal is not None:
            extras.append(
                "no conversion"
                if not d.proposal.conversion
                else f"prefer {', '.join(d.proposal.prefer)}"
            )
        source = configured.get(d.key)
        if source is not None:
            extras.extend(_edits(source))
        lines.append(line + (f" ({'; '.join(extras)})" if extras else ""))
    if settled.rules is None:
        lines.append("Rules: none, every file goes to every destination")
    else:
        policy = (
            "the first rule that matches"
            if settled.rules.first_match
            else "every rule that matches"
        )
        lines.append(f"Rules ({policy} applies):")
        lines.extend(f"  {line}" for line in settled.rules.describe())
    return lines


def _gb(value: float | None) -> str:
    return "none" if value is None else f"{value:g} GB"


def _edits(d: DestinationConfig) -> list[str]:
    words = []
    for e in d.edits:
        if e.kind == "map_uids":
            words.append("map UIDs")
        elif e.kind == "remove":
            words.append(f"remove {e.element}")
        elif e.kind == "copy":
            words.append(f"copy {e.source} to {e.element}")
        else:
            words.append(f"{e.kind} {e.element} {e.value!r}")
    if d.deidentify is not None:
        options = ", ".join(d.deidentify.options) or "no options"
        words.append(f"de-identify: {d.deidentify.profile} profile, {options}")
    return ["edits: " + ", ".join(words)] if words else []


def check(args: argparse.Namespace) -> int:
    """``--check-config``: print the table (the file was checked by ``settle``)."""
    settled = settle(args)
    for line in table(args, settled):
        print(line)
    return 0


__all__ = ["Settled", "add_config_arguments", "check", "settle", "table"]
