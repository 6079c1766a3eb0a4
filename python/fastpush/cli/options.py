"""argparse types shared by the commands: each checks a value and says what is wrong with it,
so that a bad option ends the run before anything is sent."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..wire.pdu import encode_ae_title


def ae_title(text: str) -> str:
    try:
        encode_ae_title(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def integer(low: int, high: int | None = None, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (or 0 when ``zero``)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (zero and value == 0) or (value >= low and (high is None or value <= high)):
            return value
        allowed = f"{low}..{high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(
            f"{value} is out of range ({'0 or ' if zero else ''}{allowed})"
        )

    return check


def amount(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number above 0, of ``unit``."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text} is not a positive number of {unit}")
        return value

    return check


seconds = amount("seconds")
port = integer(1, 65535)
# PS3.8 D.1: the Maximum Length is a 32-bit field (0: no limit); below 4096, as DCMTK refuses,
# a PDU carries too little to be worth its header.
pdu_length = integer(4096, 0xFFFFFFFF)
positive = integer(1)
