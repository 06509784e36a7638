"""The holder page in headless Chromium: sign in with a token, see the statements and the chart, download one."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import datetime, timezone

import pytest

from learnright.api import create_app
from ground.metrics import Metrics
from learnright.server import HttpServer
from ground.settings import Settings
from ledger.storage.store import Ledger
from ledger.services.tokens import HOLDER, create_token
from tests.learnright.books import book_two_holders

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (make browser)")


@pytest.fixture
def site(tmp_path, license_book_text):
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "key.pem"})
    with Ledger.open(path) as ledger:
        token = create_token(ledger, role=HOLDER, holder_id="h-ann", now=datetime.now(timezone.utc)).token
        server = HttpServer(create_app(ledger=ledger, settings=settings, metrics=Metrics()), "127.0.0.1", 0).start()
        try:
            yield server.url, token
        finally:
            server.stop()


def test_a_holder_signs_in_sees_statements_and_chart_and_downloads_a_csv(site, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(f"{url}/")
            page.fill("#token", token)
            page.click("text=Show my statements")
            page.wait_for_selector("#statements tbody tr")
            assert page.inner_text("#who") == "Statements of h-ann"
            rows = page.locator("#statements tbody tr")
            assert [rows.nth(i).locator("td").nth(0).inner_text() for i in range(rows.count())] == [
                "2026-02", "2026-03", "2026-04"]
            assert rows.nth(2).locator("td").nth(3).inner_text() == "3.6"
            bars = page.locator("svg.royalty-chart rect")
            assert [bars.nth(i).get_attribute("data-period") for i in range(bars.count())] == [
                "2026-02", "2026-03", "2026-04"]
            assert {bars.nth(i).get_attribute("data-source") for i in range(bars.count())} == {"src-novels"}
            with page.expect_download() as caught:
                rows.nth(2).locator("a.download-csv").click()
            download = caught.value
            assert download.suggested_filename == "2026-04_h-ann_USD.csv"
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            summary = {r["unit"]: r["amount"] for r in csv.DictReader(io.StringIO(saved.read_text()))
                       if r["kind"] == "summary"}
            assert summary["payable"] == "3.60"
            page.click("#signout")
            assert page.is_visible("#token")
            page.fill("#token", token + "tampered")
            page.click("text=Show my statements")
            page.wait_for_selector("#error:not([hidden])")
            assert "unknown API token" in page.inner_text("#error")
        finally:
            browser.close()
