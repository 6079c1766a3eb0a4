"""MkDocs hook: the build fails unless every public name is documented and on an API page.

For every name in ``fastpush.__all__`` (read statically by griffe from ``python/``, the view
mkdocstrings renders, with re-exports and the lazily loaded names resolved):

- it has a docstring;
- a function's or class's parameters are documented: each parameter's name appears in the
  docstring (the class's or its ``__init__``'s; ``name`` or ````name````) or, for a dataclass
  field, the field has its own attribute docstring; ``**options`` counts as documented when the
  docstring says where the other keyword arguments go;
- it is rendered by some ``::: fastpush.NAME`` in ``docs/api/*.md``.

``docstring-gaps.txt`` beside this file lists the gaps known when the check was introduced (one
``NAME`` or ``NAME.parameter`` a line): they are reported, not fatal. Anything else fails the
build; an entry that is no longer a gap is reported so the list can shrink.

Run it alone for the full report: ``python docs/hooks/docstrings.py``.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "fastpush"
SOURCE = ROOT / "python"
API_PAGES = ROOT / "docs" / "api"
KNOWN_GAPS = Path(__file__).with_name("docstring-gaps.txt")

log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")


def _documented(name: str, docstring: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", docstring) is not None


def _gaps() -> list[str]:
    """Every gap in the public API's docstrings: ``NAME`` (no docstring) or ``NAME.param``."""
    import griffe

    package = griffe.load(PACKAGE, search_paths=[str(SOURCE)], resolve_aliases=True)
    gaps: list[str] = []
    for name in package.exports or ():
        obj = package[name]
        target = obj.final_target if obj.is_alias else obj
        docstring = target.docstring.value if target.docstring else ""
        if not docstring.strip():
            gaps.append(name)
        if not (target.is_function or target.is_class):
            continue
        texts = [docstring]
        if target.is_class and "__init__" in target.members:
            init = target.members["__init__"]
            if init.docstring:
                texts.append(init.docstring.value)
        text = " ".join(" ".join(texts).split())
        for parameter in target.parameters:
            if parameter.name in ("self", "cls"):
                continue
            if _documented(parameter.name, text):
                continue
            member = target.members.get(parameter.name) if target.is_class else None
            if member is not None and member.docstring and member.docstring.value.strip():
                continue
            if parameter.kind is griffe.ParameterKind.var_keyword and "keyword argument" in text:
                continue
            gaps.append(f"{name}.{parameter.name}")
    return gaps


def _unrendered(names: list[str]) -> list[str]:
    """The public names no API page renders with ``::: fastpush.NAME``."""
    rendered: set[str] = set()
    for page in API_PAGES.glob("*.md"):
        rendered.update(re.findall(rf"^:::\s*{PACKAGE}\.(\w+)\s*$", page.read_text(), re.M))
    return [name for name in names if name not in rendered]


def _known() -> set[str]:
    if not KNOWN_GAPS.exists():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in KNOWN_GAPS.read_text().splitlines())
    return {line for line in lines if line}


def check() -> tuple[list[str], list[str], list[str]]:
    """Return (new problems, known gaps still open, known gaps now fixed)."""
    import griffe

    exports = list(griffe.load(PACKAGE, search_paths=[str(SOURCE)]).exports or ())
    gaps = _gaps()
    known = _known()
    problems = [f"{gap}: not documented" for gap in gaps if gap not in known]
    problems += [
        f"{name}: no API page renders it (add '::: {PACKAGE}.{name}' to a page in docs/api/)"
        for name in _unrendered(exports)
    ]
    return problems, [gap for gap in gaps if gap in known], sorted(known - set(gaps))


def on_config(config: Any) -> Any:
    from mkdocs.exceptions import PluginError

    problems, open_gaps, fixed = check()
    if open_gaps:
        log.info(
            "%d known docstring gaps in fastpush.__all__ (docs/hooks/docstring-gaps.txt): %s",
            len(open_gaps),
            ", ".join(open_gaps),
        )
    if fixed:
        log.info("documented now, remove from docs/hooks/docstring-gaps.txt: %s", ", ".join(fixed))
    if problems:
        raise PluginError(
            "the public API is not fully documented:\n  "
            + "\n  ".join(problems)
            + "\n(every name in fastpush.__all__ needs a docstring that names its parameters)"
        )
    return config


if __name__ == "__main__":
    problems, open_gaps, fixed = check()
    for line in problems:
        print(f"error: {line}")
    for gap in open_gaps:
        print(f"known gap: {gap}")
    for gap in fixed:
        print(f"fixed (remove from {KNOWN_GAPS.name}): {gap}")
    sys.exit(1 if problems else 0)
