"""What the upper layer allows, known without its codecs: each role's default maximum PDU
length, the rule for AE titles and the names of the user identity token kinds.

Imports nothing, so that the command line builds its parser (and ``--help``) from here without
loading ``pdu`` and ``identity`` (dataclasses, struct, pathlib); they re-export these names.
"""

# Our Maximum Length Received by default (PS3.8 D.1), one for each role. As the requestor we
# receive only short responses: storescu's 16 KiB. As the acceptor we receive whole datasets:
# 128 KiB PDUs, as storescp offers, cost fewer PDV headers and system calls.
REQUESTOR_MAX_PDU = 16384
ACCEPTOR_MAX_PDU = 131072

# The identity types that carry a token (PS3.7 D.3.3.7), by the lower-case name of their
# ``identity.IdentityType`` member.
TOKEN_NAMES = ("kerberos", "saml", "jwt")


def valid_ae_title(title: str) -> bool:
    """Whether the standard allows ``title``: 1 to 16 ASCII characters, not all spaces, no
    backslash."""
    return title.isascii() and bool(title.strip()) and len(title) <= 16 and "\\" not in title


def encode_ae_title(title: str) -> bytes:
    """The 16-byte field of an AE title; ValueError for a title the standard does not allow."""
    if not valid_ae_title(title):
        raise ValueError(f"AE title {title!r} must be 1 to 16 ASCII characters")
    return title.encode("ascii").ljust(16, b" ")
