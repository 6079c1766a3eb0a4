"""What a storage SCP accepts: the answer to an A-ASSOCIATE-RQ (PS3.8 section 7.1).

:class:`AcceptPolicy` holds the choices (called AE check, calling AE allow-list, SOP classes,
transfer syntax preference in DCMTK ``storescp``'s vocabulary, our maximum PDU length);
:meth:`AcceptPolicy.rejection` and :meth:`AcceptPolicy.acceptance` apply them to a decoded
request. Pure: the connection, the identity check and the association limit are
``server``'s business.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field

from ..uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LE,
    VERIFICATION,
)
from ..wire import pdu
from ..wire.commitment import STORAGE_COMMITMENT

# Presentation context results (PS3.8 table 9-18).
_ACCEPTED = 0
_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

_UNCOMPRESSED = (EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE)

# storescp's transfer syntax options, as (preferred syntaxes in order, accept the others the
# sender proposed). "first" (``+xf``, our default) takes what the sender proposed first.
SYNTAX_PREFERENCES: dict[str, tuple[tuple[str, ...], bool]] = {
    "first": ((), True),
    "uncompressed": (_UNCOMPRESSED, False),
    "little": ((EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE), False),
    "big": ((EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE), False),
    "implicit": ((IMPLICIT_VR_LE,), False),
    "deflated": ((DEFLATED_EXPLICIT_VR_LE, *_UNCOMPRESSED), False),
    "all": (_UNCOMPRESSED, True),
}

# The smallest Maximum Length Received (PS3.8 D.1) we answer within, 0 meaning no limit. The
# standard sets no floor, but DCMTK's (ASC_MINIMUMPDUSIZE) and our own (``AcceptPolicy.max_pdu``)
# is 4096, a whole response command set (under 300 bytes) fits a fragment many times over, and no
# real sender goes lower: below it is a misconfiguration or a probe, and at 1 to 7 no fragment
# fits at all. Rejecting at the door beats storing a file and failing to answer for it.
MIN_PEER_MAX_LENGTH = 4096

# A-ASSOCIATE-RJ (PS3.8 table 9-21): (result, source, reason).
_REJECTED_PERMANENT = 1
_SERVICE_USER = 1
_SERVICE_PROVIDER_ACSE = 2
_NO_REASON = 1
_PROTOCOL_VERSION_NOT_SUPPORTED = 2
_CALLING_AE_NOT_RECOGNIZED = 3
_CALLED_AE_NOT_RECOGNIZED = 7


def malformed(rq: pdu.AssociateRQ) -> str | None:
    """What makes a request one no association can come of (the ACSE provider's concern, not a
    policy), or None. Context IDs are odd, 1 to 255 (a byte), and unique (PS3.8 9.3.2.2)."""
    if not rq.contexts:
        return "no presentation contexts"
    seen: set[int] = set()
    for pc in rq.contexts:
        if pc.context_id % 2 == 0 or not 1 <= pc.context_id <= 255:
            return f"presentation context ID {pc.context_id} (must be odd, 1 to 255)"
        if pc.context_id in seen:
            return f"presentation context ID {pc.context_id} proposed twice"
        seen.add(pc.context_id)
    if 0 < rq.max_length < MIN_PEER_MAX_LENGTH:
        return f"Maximum Length Received {rq.max_length} (below {MIN_PEER_MAX_LENGTH})"
    return None


@functools.cache
def storage_sop_classes() -> frozenset[str]:
    """Every storage SOP class pydicom's UID dictionary knows."""
    from pydicom._uid_dict import UID_dictionary

    return frozenset(
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class"
        and "Storage" in name
        and "Commitment" not in name
        and not name.startswith("Media Storage Directory")
    )


@functools.cache
def known_transfer_syntaxes() -> frozenset[str]:
    from pydicom._uid_dict import UID_dictionary

    return frozenset(
        uid for uid, (_n, kind, *_r) in UID_dictionary.items() if kind == "Transfer Syntax"
    )


@dataclass(frozen=True)
class AcceptPolicy:
    """What the server accepts.

    - ``check_called_ae``: reject a request not addressed to our AE title (default: any title).
    - ``calling_aes``: accept only these calling AE titles (default: anyone).
    - ``sop_classes``: the storage SOP classes accepted (default: every one pydicom knows);
      ``promiscuous`` accepts any abstract syntax. Verification is always accepted.
    - ``syntax``: a key of :data:`SYNTAX_PREFERENCES`, storescp's ``+xf`` (``first``, the
      default: the syntax the sender proposed first), ``+x=`` (``uncompressed``), ``+xe``
      (``little``), ``+xb`` (``big``), ``+xi`` (``implicit``), ``+xd`` (``deflated``), ``+xa``
      (``all``: uncompressed preferred, any other syntax accepted).
    - ``max_pdu``: our Maximum Length Received (0: no limit).
    - ``commitment``: accept the Storage Commitment Push Model too, in the roles proposed.
    """

    check_called_ae: bool = False
    calling_aes: Collection[str] | None = None
    sop_classes: Collection[str] | None = None
    promiscuous: bool = False
    syntax: str = "first"
    max_pdu: int = pdu.ACCEPTOR_MAX_PDU
    commitment: bool = False
    _calling: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.syntax not in SYNTAX_PREFERENCES:
            choices = ", ".join(SYNTAX_PREFERENCES)
            raise ValueError(f"unknown transfer syntax preference {self.syntax!r} ({choices})")
        if self.max_pdu != 0 and not 4096 <= self.max_pdu <= 0xFFFFFFFF:
            raise ValueError(f"max_pdu {self.max_pdu} must be 0 or 4096..4294967295")
        calling = None if self.calling_aes is None else frozenset(self.calling_aes)
        object.__setattr__(self, "_calling", calling)

    def choose_syntax(self, proposed: tuple[str, ...]) -> str | None:
        """The transfer syntax we accept from those proposed for one context, or None."""
        preferred, others = SYNTAX_PREFERENCES[self.syntax]
        for syntax in preferred:
            if syntax in proposed:
                return syntax
        if not others:
            return None
        known = known_transfer_syntaxes()
        return next((s for s in proposed if s in known or self.promiscuous), None)

    def accepts_abstract_syntax(self, uid: str) -> bool:
        if uid == VERIFICATION or self.promiscuous:
            return True
        if uid == STORAGE_COMMITMENT:
            return self.commitment
        allowed = storage_sop_classes() if self.sop_classes is None else self.sop_classes
        return uid in allowed

    def rejection(self, rq: pdu.AssociateRQ, ae_title: str) -> pdu.AssociateRJ | None:
        """Why the request as a whole is refused (rejected-permanent).

        By the ACSE service provider: a request without protocol version 1 (only bit 0 is
        tested, as PS3.8 9.3.2 asks of a version 1 receiver), "protocol version not supported";
        a :func:`malformed` one, "no reason given". By the service user: a title we could not
        send back in the A-ASSOCIATE-AC (all spaces, a backslash) or that the policy refuses is
        not recognized."""
        if not rq.protocol_version & 1:
            return pdu.AssociateRJ(
                _REJECTED_PERMANENT, _SERVICE_PROVIDER_ACSE, _PROTOCOL_VERSION_NOT_SUPPORTED
            )
        if malformed(rq) is not None:
            return pdu.AssociateRJ(_REJECTED_PERMANENT, _SERVICE_PROVIDER_ACSE, _NO_REASON)
        if not pdu.valid_ae_title(rq.called_ae) or (
            self.check_called_ae and rq.called_ae != ae_title
        ):
            return pdu.AssociateRJ(_REJECTED_PERMANENT, _SERVICE_USER, _CALLED_AE_NOT_RECOGNIZED)
        if not pdu.valid_ae_title(rq.calling_ae) or (
            self._calling is not None and rq.calling_ae not in self._calling
        ):
            return pdu.AssociateRJ(_REJECTED_PERMANENT, _SERVICE_USER, _CALLING_AE_NOT_RECOGNIZED)
        return None

    def context_results(self, rq: pdu.AssociateRQ) -> tuple[pdu.ContextResult, ...]:
        results = []
        for pc in rq.contexts:
            if not self.accepts_abstract_syntax(pc.abstract_syntax):
                result = pdu.ContextResult(pc.context_id, _ABSTRACT_SYNTAX_NOT_SUPPORTED, "")
            elif (syntax := self.choose_syntax(pc.transfer_syntaxes)) is None:
                result = pdu.ContextResult(pc.context_id, _TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
            else:
                result = pdu.ContextResult(pc.context_id, _ACCEPTED, syntax)
            results.append(result)
        return tuple(results)

    def acceptance(
        self, rq: pdu.AssociateRQ, identity_response: bytes | None = None
    ) -> pdu.AssociateAC:
        """The A-ASSOCIATE-AC for a request :meth:`rejection` let through."""
        return pdu.AssociateAC(
            rq.called_ae,
            rq.calling_ae,
            self.context_results(rq),
            self.max_pdu,
            IMPLEMENTATION_CLASS_UID,
            IMPLEMENTATION_VERSION_NAME,
            identity_response,
            tuple(r for r in rq.roles if self.commitment and r.sop_class_uid == STORAGE_COMMITMENT),
        )
