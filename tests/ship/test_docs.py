"""The documentation site builds with --strict and shows the API from the docstrings (issue 21).

``scripts/docs.sh`` builds ``site/`` once for the module (about 2 s); the tests read the HTML.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docs, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site"


def _text(page: Path) -> str:
    """The page's text, tags removed, entities decoded, whitespace collapsed."""
    markup = re.sub(r"<script.*?</script>|<style.*?</style>", "", page.read_text(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


@pytest.fixture(scope="module")
def site() -> Path:
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docs.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert build.returncode == 0, f"scripts/docs.sh failed:\n{build.stdout}\n{build.stderr}"
    return SITE


def test_store_client_page_lists_its_parameters(site: Path) -> None:
    page = site / "api" / "client" / "index.html"
    assert 'id="fastpush.StoreClient"' in page.read_text()
    text = _text(page)
    # The signature, highlighted token by token: 'host', ':' and 'str' are separate elements.
    start = re.search(r"\bStoreClient\s*\(", text)
    assert start, "no signature"
    signature = text[start.end() :]
    for parameter in (
        "host",
        "port",
        "associations",
        "groups",
        "retry",
        "max_per_association",
        "proposal",
        "give_up_after",
        "on_event",
        "lease",
        "options",
    ):
        assert re.match(rf".*?[(,*]\s*{parameter}\s*:", signature), parameter
    # The docstring's prose, where the parameters are explained.
    assert "associations caps the workers" in text
    assert "give_up_after (seconds)" in text
    for method in ("store", "submit"):
        assert re.search(rf"\b{method}\s*\(\s*item\s*:", text), method


def test_every_public_name_is_on_an_api_page(site: Path) -> None:
    import fastpush

    ids: set[str] = set()
    for page in (site / "api").rglob("index.html"):
        ids.update(re.findall(r'id="fastpush\.(\w+)"', page.read_text()))
    assert sorted(set(fastpush.__all__) - ids) == []


def test_performance_pages_come_from_benches_results(site: Path) -> None:
    results = sorted((ROOT / "benches" / "results").glob("*.md"))
    assert results
    for source in results:
        page = site / "performance" / source.stem / "index.html"
        assert page.exists(), f"no page for {source.name}"
        heading = re.search(r"^#\s+(.+)$", source.read_text(), re.M)
        assert heading
        assert html.unescape(" ".join(heading.group(1).replace("`", "").split())) in _text(page)
        assert "<table>" in page.read_text() or "|" not in source.read_text()
    index = _text(site / "performance" / "index.html")
    assert "<!-- bench-results -->" not in index
    assert all(f"benches/results/{source.name}" in index for source in results)


def test_getting_started_keeps_the_two_commands(site: Path) -> None:
    text = _text(site / "getting-started" / "index.html")
    assert "bash scripts/setup.sh" in text
    assert "bash scripts/test.sh" in text
