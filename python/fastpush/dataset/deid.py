"""The PS3.15 Annex E Basic Application Level Confidentiality Profile compiled into edit rules
(``deid_table`` holds the standard's table as generated data).

How the table's codes become actions, where the standard leaves a choice to the IOD (we do not
know every IOD's attribute types, so the choice keeps any instance valid):

- D: a dummy fitting the VR (a sequence is kept and its items cleaned); Patient's Name and
  Patient ID get the keyed pseudonym of the Patient ID instead, so a patient stays one patient.
- Z: zero length (an empty sequence). Z/D: D (a dummy is valid where the attribute is Type 1).
- X, X/Z, X/D, X/Z/D: removed (any of them may be removed unless the IOD requires them).
- X/Z/U*: a sequence is kept (the UIDs in its items are mapped by their own rules), a UID is
  mapped, anything else removed.
- U: mapped with the key (``2.25.`` + HMAC). K: kept.

Each option applies its own column of Table E.1-1 (``deid_table.OPTIONS``), over the Basic
Profile's action: K keeps the attribute. C ("clean": keep it with any identifying information
taken out) is applied as follows.

- Retain Longitudinal Temporal Information with Modified Dates: its column's DA and DT values
  are shifted back by the patient's offset, TM values kept (a whole-day shift leaves the time of
  day right); its other cells (timestamps in OB/UN, Timezone Offset From UTC) keep the Basic
  Profile's action. Patient's Birth Date is not in the column: it stays empty.
- Every other C (the Clean Descriptors column: Study, Series and Protocol descriptions,
  comments, labels; and the C cells of Retain Patient Characteristics and Retain Device
  Identity: Allergies, Special Needs, AE titles...) is free text. E.3.5 asks that identifying
  text be removed from it; a machine cannot do that reliably (its Note 2: keep only values known
  to be safe), and the header is rewritten in Rust as it streams. So a C cell is kept only with
  ``clean_descriptors``, by which the caller states that these values are clean (cleaned before
  they reach us, or the site's own protocol and series names known to be safe), and the code
  113105 goes out with that statement. A value known to be safe can also be written with a
  ``Set`` edit, which wins over the profile. Without ``clean_descriptors`` a C cell keeps the
  Basic Profile's action (removed, emptied or a dummy): nothing is kept that no one vouched for.

When a date is in the Modified Dates column and another option's K, the shift wins (no real
date goes out with that option). Private elements are removed but for those kept by name.
Patient Identity Removed (YES), De-identification Method and its Code Sequence (CID 7050: the
profile's code and each option's) say what was done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .deid_table import MASKED, OPTIONS, PROFILE

if TYPE_CHECKING:
    from .edits import Deidentify, RuleTuple

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_IDENTITY_REMOVED = 0x00120062
DEIDENTIFICATION_METHOD = 0x00120063
DEIDENTIFICATION_METHOD_CODES = 0x00120064
LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED = 0x00280303
_CODE_VALUE, _SCHEME, _MEANING = 0x00080100, 0x00080102, 0x00080104

# PS3.16 CID 7050, De-identification Method.
BASIC = ("113100", "Basic Application Confidentiality Profile")
_OPTION_CODES = {
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "keep_private": ("113111", "Retain Safe Private Option"),
}
# The options that keep what their column of Table E.1-1 marks K (or C, when cleaned).
_COLUMNS = (
    "retain_uids",
    "retain_patient_characteristics",
    "retain_device_identity",
    "clean_descriptors",
)
_SHIFTED = OPTIONS["retain_longitudinal_modified_dates"]


def action(tag: int, code: str, vr: str, options: Deidentify) -> tuple[str, Any]:
    """The editor's action (and value) for one table entry under ``options``."""
    if options.retain_dates and tag in _SHIFTED:
        if vr in ("DA", "DT"):
            return "shift_date", None
        if vr == "TM":
            return "keep", None
    marks = {OPTIONS[name].get(tag) for name in _COLUMNS if getattr(options, name)}
    if "K" in marks or ("C" in marks and options.clean_descriptors):
        return "keep", None
    if tag in (PATIENT_NAME, PATIENT_ID):
        return "pseudonym", None
    if code == "X/Z/U*":
        code = {"SQ": "K", "UI": "U"}.get(vr, "X")
    return {
        "U": ("map_uid", None),
        "D": ("dummy", None),
        "Z/D": ("dummy", None),
        "Z": ("empty", None),
        "K": ("keep", None),
    }.get(code, ("remove", None))


def _private(spec: str) -> tuple[str, int, str, int]:
    try:
        group, creator, element = (p.strip() for p in spec.split(","))
        selector = ("private", int(group, 16), creator, int(element, 16))
    except ValueError:
        raise ValueError(f"keep_private {spec!r}: use 'gggg,CREATOR,ee'") from None
    if selector[1] % 2 == 0 or selector[3] > 0xFF:
        raise ValueError(f"keep_private {spec!r}: not a private group and element byte")
    return selector


def profile_rules(options: Deidentify) -> list[RuleTuple]:
    """The profile as rules for every depth, then the attributes it adds to the top level."""
    rules: list[RuleTuple] = []
    for spec in options.keep_private:
        rules.append((_private(spec), None, "keep", None, None))
    for tag, (code, vr) in PROFILE.items():
        kind, value = action(tag, code, vr, options)
        rules.append((tag, None, kind, value, None))
    for mask, value, code in MASKED:
        rules.append((("masked", mask, value), None, action(0, code, "", options)[0], None, None))
    chosen = [BASIC] + [c for name, c in _OPTION_CODES.items() if getattr(options, name)]
    items = [
        [(_CODE_VALUE, "SH", v), (_SCHEME, "SH", "DCM"), (_MEANING, "LO", m)] for v, m in chosen
    ]
    method = "fastpush " + "; ".join(m for _, m in chosen)
    added: list[RuleTuple] = [
        (PATIENT_IDENTITY_REMOVED, [], "set", "YES", None),
        (DEIDENTIFICATION_METHOD, [], "set", method[:64], None),
        (DEIDENTIFICATION_METHOD_CODES, [], "set_items", items, None),
    ]
    if options.retain_dates:
        added.append((LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, [], "set", "MODIFIED", None))
    # Top-level rules first: they win over the table's rule for the same tag.
    return added + rules
