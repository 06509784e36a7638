"""The holder page in headless Chromium: sign in, see statements, chart and open month, check signatures, download."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone

import duckdb
import pytest
from cryptography.hazmat.primitives import serialization

from learnright.api import create_app
from ground.metrics import Metrics
from learnright.server import HttpServer
from ground.settings import Settings
from ledger.storage.store import Ledger
from ledger.services.tokens import HOLDER, create_token
from tests.learnright.books import book_two_holders
from tests.learnright.test_open_month import book_open_months
from tests.ledger.keys import SIGNER

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.skipif(bool(os.environ.get("SKIP_BROWSER")), reason="SKIP_BROWSER is set (make test SKIP_BROWSER=1)"),
              pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (make browser)")]


@contextmanager
def serve(path, tmp_path, prepare=lambda ledger: None):
    """Serves the ledger at ``path`` with the key that signed its statements; yields (url, h-ann's token)."""
    key = tmp_path / "key.pem"
    key.write_bytes(SIGNER.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots", "signing_key": key})
    with Ledger.open(path) as ledger:
        prepare(ledger)
        token = create_token(ledger, role=HOLDER, holder_id="h-ann", now=datetime.now(timezone.utc)).token
        server = HttpServer(create_app(ledger=ledger, settings=settings, metrics=Metrics()), "127.0.0.1", 0).start()
        try:
            yield server.url, token
        finally:
            server.stop()


@pytest.fixture
def site(tmp_path, license_book_text):
    with serve(book_two_holders(tmp_path / "ledger.duckdb", license_book_text), tmp_path) as served:
        yield served


@pytest.fixture
def tampered_site(tmp_path, license_book_text):
    """The same book with h-ann's March statement altered in the file after it was signed, and May still open.

    The change is made as an intruder would: with a DuckDB connection of its own, in the open,
    on the stored document (the ledger's own code never updates a row). The API then serves
    that document in a signed file whose signature no longer matches it.
    """
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    con = duckdb.connect(str(path))
    try:
        ((statement_id, document),) = con.execute(
            "SELECT statement_id, document FROM statements WHERE holder_id = 'h-ann' AND period = '2026-03'").fetchall()
        altered = json.loads(document)
        altered["summary"]["payable"] = "999.00"
        con.execute("UPDATE statements SET document = ? WHERE statement_id = ?", [json.dumps(altered), statement_id])
    finally:
        con.close()
    with serve(path, tmp_path, prepare=book_open_months) as served:
        yield served


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
            assert rows.nth(2).locator("td").nth(4).inner_text() == "0"  # carried: plain decimals, never 0E-12
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


def test_the_page_checks_each_signature_marks_a_tampered_statement_failed_and_shows_the_open_month(tampered_site):
    from playwright.sync_api import sync_playwright

    url, token = tampered_site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/#token={token}")
            page.wait_for_selector("#statements tbody tr")
            # Every row ends checked one way or the other: wait for no row still "checking".
            page.wait_for_function("""() => [...document.querySelectorAll('#statements td.signature')]
                .every((td) => td.dataset.signature)""", timeout=30_000)
            rows = page.locator("#statements tbody tr")
            results = {rows.nth(i).locator("td").nth(0).inner_text():
                       rows.nth(i).locator("td.signature").get_attribute("data-signature") for i in range(rows.count())}
            assert results == {"2026-02": "verified", "2026-03": "failed", "2026-04": "verified"}
            march = rows.nth(1).locator("td.signature").inner_text()
            assert march.startswith("signature FAILED") and "does not match the statement" in march
            assert rows.nth(0).locator("td.signature").inner_text() == "signature verified"
            # The fingerprint the page computed from the published key's bytes is the ledger's.
            page.wait_for_function("() => document.getElementById('key-fingerprint').textContent.startsWith('sha256:')")
            assert page.inner_text("#key-fingerprint") == SIGNER.fingerprint
            # May is open: booked so far, per source, marked provisional; April's late entry is not shown.
            page.wait_for_selector("#open-months:not([hidden]) #open tbody tr")
            assert "provisional" in page.inner_text("#open-months h2")
            open_rows = page.locator("#open tbody tr")
            assert [[c.inner_text() for c in open_rows.nth(i).locator("td").all()] for i in range(open_rows.count())] == [
                ["2026-05 (open)", "src-novels", "USD", "0.7 answer (inference), 2500000 tokens (training)", "3.0021"]]
            assert open_rows.nth(0).get_attribute("class") == "provisional"
        finally:
            browser.close()
