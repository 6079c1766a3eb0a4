"""UIDs and names fastpush needs on the wire, and nothing else."""

from __future__ import annotations

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

# Derived from the UUID-based root 2.25; identifies this implementation to peers.
IMPLEMENTATION_CLASS_UID = "2.25.186226306541893541271926212937526468311"
IMPLEMENTATION_VERSION_NAME = "FASTPUSH_010"


def uid_name(uid: str) -> str:
    """A readable name for a UID pydicom knows, else the UID itself."""
    # The dictionary, not pydicom's UID(): that one warns about a malformed UID (a sender's).
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[0] if entry is not None and entry[0] else uid
