"""MkDocs hook: pages made at build time from files that live elsewhere in the repository.

- ``performance/<name>.md`` for every ``benches/results/<name>.md``, as the benchmarks last wrote
  it (a run that records a new results file gets a page, added to the Performance section of the
  nav; the list of them replaces ``<!-- bench-results -->`` in ``performance/index.md``);
- ``changelog.md`` from ``CHANGELOG.md``;
- ``<!-- cli-help: COMMAND -->`` in any page becomes ``python -m fastpush COMMAND --help`` as this
  tree prints it (the CLI's own reference: every option, its default and help, never stale);
- ``<!-- readme: HEADING -->`` in any page becomes that section of ``README.md`` (its body, down to
  the next heading of the same level or above), so the guide and the README say the same.

Nothing is copied into ``docs/``: the site shows whatever the benchmarks and the changelog say.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benches" / "results"
SECTION = "Performance"
MARKER = "<!-- bench-results -->"
CLI_HELP = re.compile(r"<!-- cli-help: (\w+) -->")
README_SECTION = re.compile(r"<!-- readme: (.+?) -->")

# Nav titles for the recorded runs (several share the harness's heading); the order they are
# listed in. A results file not named here is listed after them under its own first heading.
TITLES = {
    "latest": "End to end",
    "parallel": "Parallel associations",
    "syntax": "Transfer syntaxes",
    "tls": "TLS",
    "scan": "Scanning",
    "receive": "Receiving",
    "route": "Routing",
    "dask": "Dask cluster",
}


def _results() -> list[tuple[str, str, Path]]:
    """(page path, title, source) for each results file, in nav order."""
    found = {path.stem: path for path in RESULTS.glob("*.md")}
    order = [stem for stem in TITLES if stem in found] + sorted(set(found) - set(TITLES))
    pages = []
    for stem in order:
        path = found[stem]
        title = TITLES.get(stem)
        if title is None:
            heading = re.search(r"^#\s+(.+)$", path.read_text(), re.M)
            title = heading.group(1).strip() if heading else stem
        pages.append((f"performance/{stem}.md", title, path))
    return pages


def on_config(config: Any) -> Any:
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and SECTION in entry:
            entry[SECTION].extend({title: page} for page, title, _ in _results())
    return config


def on_files(files: Files, config: Any) -> Files:
    for page, _, path in _results():
        source = path.relative_to(ROOT)
        note = (
            f"\n\n---\n\n*Recorded by the benchmarks in `{source}`; "
            "see [how to run them](index.md#running-the-benchmarks).*\n"
        )
        files.append(File.generated(config, page, content=path.read_text() + note))
    changelog = ROOT / "CHANGELOG.md"
    files.append(File.generated(config, "changelog.md", content=changelog.read_text()))
    return files


def _help(command: str) -> str:
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1", PYTHON_COLORS="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    shown = subprocess.run(
        [sys.executable, "-m", "fastpush", command, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return f"```text\n{shown.stdout.rstrip()}\n```"


def _readme_section(heading: str) -> str:
    """The body of the README section titled ``heading`` (a missing one fails the build)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for n, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and line[level:].strip() == heading:
            body = []
            for later in lines[n + 1 :]:
                depth = len(later) - len(later.lstrip("#"))
                if depth and depth <= level and later[depth : depth + 1] == " ":
                    break
                body.append(later)
            return "\n".join(body).strip("\n")
    raise ValueError(f"README.md has no section {heading!r}")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    markdown = CLI_HELP.sub(lambda match: _help(match.group(1)), markdown)
    markdown = README_SECTION.sub(lambda match: _readme_section(match.group(1)), markdown)
    if page.file.src_uri != "performance/index.md":
        return markdown
    listing = "\n".join(
        f"- [{title}]({Path(uri).name}) — `{path.relative_to(ROOT)}`"
        for uri, title, path in _results()
    )
    return markdown.replace(MARKER, listing)
