"""The router's config file (route/config.py, cli/route_config.py): the issue's example
parses, every bad key ends with one line naming the key and its line (exit 2, before the port
opens), --check-config prints the effective table, command-line options win over the file."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastpush.route.config import ConfigError, edit_plan, line_of, parse

from support.peers import free_port

EXAMPLE = """\
[receive]
port = 11112
ae_title = "ROUTER"
spool = "/var/spool/fastpush"

[destinations.pacs]
host = "pacs.example"
port = 104
called_ae = "PACS"

[destinations.research]
host = "research.example"
port = 11112
called_ae = "RESEARCH"
edits = [{ set = "InstitutionName", value = "SITE A" }, { remove = "(0010,1000)" }, { map_uids = true }]
deidentify = { profile = "basic", key_file = "/etc/fastpush/deid.key" }

[[rules]]
match = { Modality = "CT", calling_ae = "SCANNER*" }
to = ["pacs", "research"]

[[rules]]
match = {}
to = ["pacs"]
"""  # noqa: E501 (the issue's example, as written)


def test_the_issue_example() -> None:
    config = parse(EXAMPLE)
    assert config.receive.port == 11112 and config.receive.ae_title == "ROUTER"
    pacs, research = config.destinations
    assert (pacs.name, pacs.host, pacs.port, pacs.called_ae) == (
        "pacs",
        "pacs.example",
        104,
        "PACS",
    )
    assert [e.kind for e in research.edits] == ["set", "remove", "map_uids"]
    assert research.edits[0].element == "InstitutionName" and research.edits[0].value == "SITE A"
    assert research.deidentify is not None and research.deidentify.profile == "basic"
    rules = config.routing()
    assert rules is not None and rules.first_match and rules.unmatched == ()
    assert [r.to for r in rules.rules] == [("pacs", "research"), ("pacs",)]
    assert config.rule_lines == (18, 22)


@pytest.mark.parametrize(
    ("change", "key", "line"),
    [
        (("port = 104", "port = 104000"), "destinations.pacs.port", 8),
        (("port = 104", 'port = "104"'), "destinations.pacs.port", 8),
        (
            ('called_ae = "PACS"', 'called_ae = "A_TITLE_FAR_TOO_LONG"'),
            "destinations.pacs.called_ae",
            9,
        ),
        (('called_ae = "PACS"', 'calld_ae = "PACS"'), "destinations.pacs.calld_ae", 9),
        (('ae_title = "ROUTER"', "ae_title = 5"), "receive.ae_title", 3),
        (('Modality = "CT"', "Modality = { gt = 3 }"), "rules[0].match.Modality", 19),
        (('Modality = "CT"', "Nonsense = 1"), "rules[0].match.Nonsense", 19),
        (('to = ["pacs"]', 'to = ["pacz"]'), "rules[1].to", 24),
        (
            ("{ map_uids = true }", "{ map_uid = true }"),
            "destinations.research.edits[2].map_uid",
            15,
        ),
        (
            ('{ remove = "(0010,1000)" }', '{ remove = "NotAKeyword" }'),
            "destinations.research.edits[1].remove",
            15,
        ),
        (
            ('{ set = "InstitutionName", value = "SITE A" }', '{ set = "InstitutionName" }'),
            "destinations.research.edits[0]",
            15,
        ),
        (
            ('profile = "basic"', 'profile = "paranoid"'),
            "destinations.research.deidentify.profile",
            16,
        ),
        (("[receive]", "[receive]\nlimits = 1"), "receive.limits", 2),
        (("match = {}", "match = {}\ndrop = true"), "rules[1]", 22),
    ],
)
def test_errors_name_key_and_line(change: tuple[str, str], key: str, line: int) -> None:
    text = EXAMPLE.replace(*change, 1)
    with pytest.raises(ConfigError) as caught:
        parse(text, "router.toml")
    message = str(caught.value)
    assert message.startswith(f"router.toml:{line}: {key}: "), message
    assert "\n" not in message


def test_syntax_error_has_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^router.toml:8: "):
        parse(EXAMPLE.replace("port = 104", "port = = 104"), "router.toml")


def test_routing_policies() -> None:
    text = EXAMPLE + '\n[routing]\nfirst_match = false\nunmatched = "research"\n'
    rules = parse(text).routing()
    assert rules is not None and not rules.first_match and rules.unmatched == ("research",)
    with pytest.raises(ConfigError, match=r":28: routing.unmatched: 'nowhere' is not"):
        parse(text.replace('unmatched = "research"', 'unmatched = "nowhere"'))


def test_line_of_dotted_and_quoted_keys() -> None:
    lines = ['[destinations."my pacs"]', 'host = "x"', "", "[receive.tls]", 'cert = "c"']
    assert line_of(lines, ("destinations", "my pacs", "host")) == 2
    assert line_of(lines, ("receive", "tls", "key")) == 4
    assert line_of(lines, ("routing",)) == 0


def _route(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastpush", "route", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _with_key(tmp_path: Path, key: bytes = b"a site key of 32 bytes, or so..") -> str:
    """EXAMPLE with its key file written under ``tmp_path``."""
    (tmp_path / "deid.key").write_bytes(key)
    return EXAMPLE.replace("/etc/fastpush/deid.key", str(tmp_path / "deid.key"))


def test_check_config_prints_the_table(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(_with_key(tmp_path))
    done = _route("--check-config", str(path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Receive: port 11112 on all addresses, AE ROUTER" in out
    assert "pacs: PACS@pacs.example:104" in out
    assert "research: RESEARCH@research.example:11112 (edits: set InstitutionName 'SITE A'" in out
    assert "Rules (the first rule that matches applies):" in out
    assert "rules[0]: Modality equals 'CT' and calling_ae glob 'SCANNER*' -> pacs, research" in out
    assert "unmatched: drop" in out
    # Command-line options win over the file.
    done = _route("--check-config", str(path), "2000", "-aet", "OTHER", "--associations", "5")
    assert "Receive: port 2000 on all addresses, AE OTHER" in done.stdout
    assert "Forward: 5 associations" in done.stdout


def test_bad_file_exits_2_with_one_line_before_the_port_opens(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "router.toml"
    path.write_text(
        EXAMPLE.replace("port = 11112", f"port = {port}", 1).replace("port = 104", "port = 0")
    )
    done = _route("--config", str(path), "--spool", str(tmp_path / "spool"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fastpush: {path}:8: destinations.pacs.port: 0 is out of range (1..65535)"
    ]
    assert not (tmp_path / "spool").exists() and not _listening(port)
    done = _route("--check-config", str(path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "cannot read {key}: No such file or directory"),
        (b"short", "the key in {key} is shorter than 16 bytes: too easy to guess"),
    ],
)
def test_a_key_file_that_cannot_be_used_exits_2_before_the_port_opens(
    tmp_path: Path, key: bytes | None, reason: str
) -> None:
    port = free_port()
    path = tmp_path / "router.toml"
    text = _with_key(tmp_path, key or b"")
    if key is None:
        (tmp_path / "deid.key").unlink()
    path.write_text(text.replace("port = 11112", f"port = {port}", 1))
    done = _route("--config", str(path), "--spool", str(tmp_path / "spool"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fastpush: {path}:16: destinations.research.deidentify.key_file: "
        + reason.format(key=tmp_path / "deid.key")
    ]
    assert not _listening(port) and not (tmp_path / "spool").exists()


def test_map_uids_needs_a_key_and_clean_descriptors_reaches_the_plan() -> None:
    alone = EXAMPLE.replace(
        'deidentify = { profile = "basic", key_file = "/etc/fastpush/deid.key" }', ""
    )
    with pytest.raises(ConfigError, match=r"^router.toml:15: destinations.research.edits\[2\]: "):
        parse(alone, "router.toml")
    keyed = alone.replace("{ map_uids = true }", '{ map_uids = true, key_file = "k" }')
    (research,) = [d for d in parse(keyed).destinations if d.name == "research"]
    assert research.edits[2].key_file == "k"
    cleaned = EXAMPLE.replace(
        'profile = "basic"', 'profile = "basic", options = ["clean_descriptors"]'
    )
    (research,) = [d for d in parse(cleaned).destinations if d.name == "research"]
    assert research.deidentify is not None
    plan = edit_plan(research.edits, research.deidentify)
    assert plan is not None and plan.deidentify is not None
    assert plan.deidentify.clean_descriptors


def test_destination_takes_a_plan_or_the_config_data(tmp_path: Path) -> None:
    from fastpush import Destination, Router
    from fastpush.dataset.edits import EditPlan, MapUids, Set

    key = tmp_path / "k.key"
    key.write_bytes(b"k" * 32)
    data = {"edits": [{"set": "InstitutionName", "value": "A"}, {"map_uids": True}]}
    data["deidentify"] = {"key_file": str(key), "options": ["retain_longitudinal_temporal"]}
    d = Destination("127.0.0.1", 104, edits=data)
    assert d.plan is not None and d.plan.edits == (Set("InstitutionName", "A"), MapUids())
    assert d.plan.deidentify is not None and d.plan.deidentify.retain_dates
    assert Destination("h", 1, edits=EditPlan((MapUids(),), key_file=str(key))).plan is not None
    with pytest.raises(ConfigError, match=r"edits\[0\]\.remove: .*NotAKeyword"):
        Destination("h", 1, edits={"edits": [{"remove": "NotAKeyword"}]})
    port = free_port()
    missing = Destination("127.0.0.1", 104, edits=EditPlan((MapUids(),), key_file="/no/key"))
    with pytest.raises(FileNotFoundError):
        Router(port, [missing], spool=tmp_path / "spool", host="127.0.0.1")
    assert not _listening(port)


def test_whole_studies_marks_the_to_before_it(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text("")
    to = ("--to", "pacs", "104", "-aec", "PACS", "--to", "ai", "11112", "--whole-studies")
    done = _route("--check-config", str(path), "11112", *to, "--study-stable", "30")
    assert done.returncode == 0, done.stderr
    assert "  PACS@pacs_104: PACS@pacs:104\n" in done.stdout
    assert "  ANY-SCP@ai_11112: ANY-SCP@ai:11112 (whole studies)\n" in done.stdout
    done = _route("--check-config", str(path), "11112", *to)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["fastpush: --whole-studies needs --study-stable S"]
    done = _route("--check-config", str(path), "11112", "--whole-studies", *to)
    assert done.returncode == 2 and "give --whole-studies after the --to it names" in done.stderr
