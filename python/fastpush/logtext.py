"""Text a peer sent (AE titles, UIDs, reasons, messages quoting its bytes), made safe for a log.

A peer on the network chooses these strings: a newline in a UID would forge a log line that
looks like ours, an escape sequence would drive the operator's terminal, and a 64 kB title would
flood the log. Every such string reaches a log message only through :func:`peer_text`.
"""

from __future__ import annotations

# Longer than any legitimate value (UIDs are at most 64 characters, AE titles 16), short enough
# that one hostile field cannot swamp a log line.
LIMIT = 128


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def peer_text(value: object, limit: int = LIMIT) -> str:
    """``value`` as text with control and other non-printable characters (and the backslash,
    so an escape cannot be faked) written as Python escapes, capped at ``limit`` characters of
    the original plus a note of how many more there were."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    # The common case, a clean short value, costs one scan.
    if not (cut.isprintable() and "\\" not in cut):
        cut = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in cut)
    if len(text) > limit:
        cut += f"...(+{len(text) - limit} characters)"
    return cut
