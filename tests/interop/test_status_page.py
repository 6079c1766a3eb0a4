"""The router's status page in a real browser: headless Chromium (Debian ``chromium``) loads it
against a running router, the numbers it shows are the router's, a click on "Hold" holds the
destination (journaled with the browser's address), and screenshots are saved in the test's
temp folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush import Destination, Router
from fastpush.route.http import OpsServer
from fastpush.route.ops import RouterOps
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.ops import get_json
from support.peers import PynetdicomSCPFactory, StoreSCPFactory
from support.routing import journal, send_all

pytestmark = pytest.mark.interop

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: run scripts/setup.sh "
            "(apt-get install -y chromium chromium-driver)"
        )


@pytest.fixture
def routed(
    storescp: StoreSCPFactory, pynetdicom_scp: PynetdicomSCPFactory, tmp_path: Path
) -> Iterator[tuple[Router, OpsServer, Path]]:
    """A router that forwarded 15 files to storescp and refused 5 of them at a picky
    pynetdicom SCP, with its HTTP endpoint."""
    files = write_study(
        tmp_path / "src", count=15, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    scp = storescp("+B", "+uf")
    picky = pynetdicom_scp(statuses=lambda n: 0xC000 if n % 3 == 0 else 0)
    spool = tmp_path / "spool"
    router = Router(
        0,
        [
            Destination("127.0.0.1", scp.port, "STORESCP", name="archive"),
            Destination("127.0.0.1", picky.port, picky.aet, name="picky"),
        ],
        spool=spool,
        host="127.0.0.1",
        retry=RetryPolicy(retries=0, backoff=0.05, max_backoff=0.3),
    )
    server = OpsServer(RouterOps(router), 0).start()
    router.start()
    try:
        send_all(router.port, files, tmp_path / "storescu.log")
        assert router.wait_idle(60)
        yield router, server, spool
    finally:
        server.stop()
        router.stop(abort=True)


def _chromium(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dump_dom_and_screenshot(routed: tuple[Router, OpsServer, Path], tmp_path: Path) -> None:
    _require_browser()
    _, server, _ = routed
    # The page fetches /api/status when loaded; --dump-dom prints the page after that
    # (the budget lets its script run).
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", server.url + "/")
    assert 'data-loaded="1"' in dom, dom[-3000:]
    assert 'data-destination="archive"' in dom
    assert 'Failed files <small id="failed-count">(5)</small>' in dom
    shot = tmp_path / "status-page.png"
    _chromium(
        f"--screenshot={shot}",
        "--window-size=1280,900",
        "--virtual-time-budget=5000",
        server.url + "/",
    )
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_shows_the_numbers_and_holds(
    routed: tuple[Router, OpsServer, Path], tmp_path: Path
) -> None:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    router, server, spool = routed
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        status = get_json(server.url + "/api/status")
        for dest in status["destinations"]:
            row = driver.find_element(By.CSS_SELECTOR, f'tr[data-destination="{dest["name"]}"]')
            shown = {
                key: row.find_element(By.CSS_SELECTOR, f"td.{key}").text
                for key in ("queued", "forwarded", "failed", "state")
            }
            assert shown == {
                "queued": str(dest["queued"]),
                "forwarded": str(dest["forwarded"]),
                "failed": str(dest["failed"]),
                "state": dest["state"],
            }
        assert driver.find_element(By.ID, "failed-count").text == "(5)"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#failed tbody tr")) == 5
        assert driver.find_element(By.ID, "received").text.startswith("15 files")
        driver.save_screenshot(str(tmp_path / "before-hold.png"))

        hold = 'tr[data-destination="archive"] button[data-action="hold"]'
        driver.find_element(By.CSS_SELECTOR, hold).click()
        release = 'tr[data-destination="archive"] button[data-action="release"]'
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, release)))
        state = driver.find_element(By.CSS_SELECTOR, 'tr[data-destination="archive"] td.state')
        assert state.text == "held"
        driver.save_screenshot(str(tmp_path / "after-hold.png"))
    finally:
        driver.quit()
    assert router.forwarders["archive"].held
    (held,) = [e for e in journal(spool) if e["step"] == "held"]
    assert held["destination"] == "archive" and held["by"].startswith("127.0.0.1:")
    assert (tmp_path / "after-hold.png").stat().st_size > 10_000
