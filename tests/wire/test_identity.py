"""User Identity negotiation (PS3.7 D.3.3.7): our sub-items decode with pynetdicom's decoder, and
a pynetdicom SCP that checks identities accepts the right one and rejects the wrong one; the
server's response is reported and secrets never reach logs, output or reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom.pdu_items import UserIdentitySubItemAC, UserIdentitySubItemRQ

import fastpush
from fastpush import Outcome
from fastpush.errors import ProtocolError
from fastpush.wire import pdu
from fastpush.wire.identity import IdentityType, UserIdentity, decode_ac, decode_rq, encode_ac

from support.peers import IdentityCheck, PynetdicomSCPFactory, run_cli

PASSWORD = "correct horse battery staple"
JWT = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYXN0cHVzaCJ9.c2lnbmF0dXJl"


def _checker(seen: list[tuple[int, bytes, bytes | None]]) -> IdentityCheck:
    """Accepts alice with the password, bob without one, and the JWT (answering "welcome")."""

    def check(kind: int, primary: bytes, secondary: bytes | None) -> tuple[bool, bytes | None]:
        seen.append((kind, primary, secondary))
        if kind == 2:
            return primary == b"alice" and secondary == PASSWORD.encode(), None
        if kind == 1:
            return primary == b"bob", None
        if kind == 5:
            return primary == JWT, b"welcome"
        return False, None

    return check


# -- wire format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        UserIdentity.user("bob"),
        UserIdentity.user("alice", PASSWORD, positive_response=True),
        UserIdentity.token(IdentityType.JWT, JWT),
        UserIdentity.token(IdentityType.SAML, b"<saml:Assertion/>", positive_response=True),
        UserIdentity.token(IdentityType.KERBEROS, bytes(range(256))),
    ],
    ids=["username", "passcode", "jwt", "saml", "kerberos"],
)
def test_rq_item_matches_pynetdicom(identity: UserIdentity) -> None:
    rq = pdu.AssociateRQ("SCP", "SCU", (), 16384, "1.2.3", "", identity)
    encoded = pdu.encode_associate_rq(rq)
    start = encoded.index(bytes([0x58, 0]))
    theirs = UserIdentitySubItemRQ()
    theirs.decode(encoded[start:])
    assert theirs.user_identity_type == identity.kind
    assert bool(theirs.positive_response_requested) == identity.positive_response
    assert theirs.primary_field == identity.primary
    assert (theirs.secondary_field or b"") == identity.secondary
    assert pdu.decode_associate_rq(encoded[6:]).user_identity == identity
    assert decode_rq(theirs.encode()[4:]) == identity


def test_ac_item_round_trips_with_pynetdicom() -> None:
    theirs = UserIdentitySubItemAC()
    theirs.server_response = b"ticket"
    assert decode_ac(theirs.encode()[4:]) == b"ticket"
    assert encode_ac(b"ticket") == theirs.encode()[4:]
    ac = pdu.AssociateAC("SCP", "SCU", (), 16384, "1.2.3", "", b"ticket")
    assert pdu.decode_associate_ac(pdu.encode_associate_ac(ac)[6:]) == ac


def test_truncated_identity_items_are_protocol_errors() -> None:
    for value in (b"", b"\x02\x00\x00\x05ab", b"\x09\x00\x00\x01a\x00\x00"):
        with pytest.raises(ProtocolError):
            decode_rq(value)
    with pytest.raises(ProtocolError):
        decode_ac(b"\x00\x05abc")


def test_secrets_stay_out_of_repr_and_descriptions() -> None:
    user = UserIdentity.user("alice", PASSWORD)
    token = UserIdentity.token(IdentityType.JWT, JWT)
    for text in (repr(user), user.describe(), repr(token), token.describe()):
        assert PASSWORD not in text and JWT.decode() not in text
    assert "alice" in user.describe()
    with pytest.raises(ValueError):
        UserIdentity(IdentityType.USERNAME, b"bob", b"secret")


# -- against pynetdicom -----------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("engine", ["rust", "python"])
def test_right_and_wrong_passcode(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    seen: list[tuple[int, bytes, bytes | None]] = []
    scp = pynetdicom_scp(identity=_checker(seen))
    good = UserIdentity.user("alice", PASSWORD)
    results = fastpush.push(study[:3], scp.host, scp.port, engine=engine, identity=good)
    assert [r.outcome for r in results] == [Outcome.STORED] * 3, [r.reason for r in results]
    assert seen == [(2, b"alice", PASSWORD.encode())]

    bad = UserIdentity.user("alice", "wrong")
    results = fastpush.push(study[:3], scp.host, scp.port, engine=engine, identity=bad)
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert "was the user identity refused?" in results[0].reason
    assert len(scp.received) == 3


@pytest.mark.interop
def test_jwt_with_positive_response_is_reported(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path]
) -> None:
    scp = pynetdicom_scp(identity=_checker([]))
    events: list[fastpush.Event] = []
    token = UserIdentity.token(IdentityType.JWT, JWT, positive_response=True)
    (result,) = fastpush.push(study[:1], scp.host, scp.port, identity=token, on_event=events.append)
    assert result.outcome is Outcome.STORED
    (accepted,) = [e for e in events if e.kind is fastpush.EventKind.ACCEPTED]
    assert accepted.details["identity_response"] == b"welcome"
    assert "user identity confirmed, server response of 7 bytes" in accepted.message


@pytest.mark.interop
def test_cli_identity_options_and_no_secret_leaks(
    pynetdicom_scp: PynetdicomSCPFactory, study_dir: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, bytes, bytes | None]] = []
    scp = pynetdicom_scp(identity=_checker(seen))
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    token_file = tmp_path / "token.jwt"
    token_file.write_bytes(JWT + b"\n")
    report = tmp_path / "report.jsonl"
    peer = ("store", scp.host, str(scp.port), str(study_dir), "-d", "--report", str(report))

    ok = run_cli(*peer, "--username", "alice", "--password-file", str(password_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    token = run_cli(*peer, "--identity-token-file", str(token_file), "--identity-response")
    assert token.returncode == 0, token.stdout + token.stderr
    assert "user identity confirmed, server response of 7 bytes" in token.stderr
    refused = run_cli(*peer, "--username", "alice", "--password", PASSWORD + "!")
    assert refused.returncode == 2
    assert "Association Rejected" in refused.stderr
    assert seen == [
        (2, b"alice", PASSWORD.encode()),
        (5, JWT, b""),
        (2, b"alice", (PASSWORD + "!").encode()),
    ]
    for done in (ok, token, refused):
        for secret in (PASSWORD, JWT.decode()):
            assert secret not in done.stdout + done.stderr
    assert PASSWORD not in report.read_text()

    usage = run_cli(*peer, "--password", PASSWORD)
    assert usage.returncode == 2 and "need --username" in usage.stderr
