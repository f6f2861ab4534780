"""report.html in headless Chromium, opened from disk: it renders without a console error,
its chart and tables hold the case's values, its filters work, and hostile evidence is
shown as text and runs nothing.

Chromium and chromedriver come from Debian (``.ci/run`` installs them); selenium is
pointed at ``/usr/bin/chromedriver`` and never downloads a driver. Without them the tests
skip, and fail under CI.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import in_ci
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.sample import generator as story

runner = CliRunner()

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Flags that keep Chromium off the network (the test machine has none) and stateless.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1300,2400",
)

#: Seconds the browser may take to load a page.
PAGE_LOAD_TIMEOUT_S = 30

HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "<script>window.pwned=1</script>"
HOSTILE_URL = "http://pay.evil.example/new-bank?inv=77"
DEFANGED_URL = "hxxp://pay[.]evil[.]example/new-bank?inv=77"
HOSTILE_FILE_NAME = "<img src=x onerror=alert(2)>.eml"


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium driven through the Debian chromedriver, with its console log."""
    if not (shutil.which("chromium") and CHROMEDRIVER.is_file()):
        _skip_or_fail("chromium and chromium-driver (Debian) are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip_or_fail("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, page: Path) -> list[dict[str, Any]]:
    """Load ``page`` from disk; returns the console entries it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return entries


def _severe(entries: list[dict[str, Any]]) -> list[str]:
    return [
        str(entry["message"])
        for entry in entries
        if entry["level"] == "SEVERE" or "Content Security Policy" in str(entry["message"])
    ]


def _analyze(evidence: Path, out: Path, *legit: str) -> None:
    args = ["analyze", str(evidence), "--case", "test", "--out", str(out), "-q"]
    for domain in legit:
        args += ["--legit", domain]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def _documents(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[1::2]]


def _per_day(documents: list[dict[str, Any]]) -> dict[str, str]:
    days = Counter(
        datetime.fromisoformat(d["@timestamp"]).astimezone(UTC).strftime("%Y-%m-%d")
        for d in documents
    )
    return {day: str(count) for day, count in days.items()}


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample case, analyzed."""
    root = tmp_path_factory.mktemp("browser-sample")
    assert runner.invoke(app, ["sample-case", str(root / "sample")]).exit_code == 0
    _analyze(root / "sample" / "evidence", root / "case", *story.LEGIT_DOMAINS)
    return root / "case"


def test_sample_report_renders_without_console_errors(
    browser: Any, sample_case: Path, tmp_path: Path
) -> None:
    entries = _open(browser, sample_case / "report.html")
    assert _severe(entries) == []
    assert browser.title == "inbec report: test"
    assert browser.find_element("css selector", "header h1").text == "BEC case test"
    shot = tmp_path / "sample-report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_bars_and_points_equal_the_case_counts(browser: Any, sample_case: Path) -> None:
    _open(browser, sample_case / "report.html")
    bars = browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline-chart rect.bar-messages'))"
        ".map(e => [e.dataset.bucket, e.dataset.count, e.getBBox().height > 0])"
    )
    points = browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline-chart circle.point-findings'))"
        ".map(e => [e.dataset.bucket, e.dataset.count])"
    )
    messages = _per_day(_documents(sample_case / "messages.ndjson"))
    findings = _per_day(_documents(sample_case / "findings.ndjson"))
    assert {day: count for day, count, _ in bars} == messages
    assert len(bars) == len(messages) == 9
    assert all(visible for _, _, visible in bars)
    assert dict(points) == findings
    assert findings["2024-04-08"] == "15"
    chart = browser.find_element("id", "timeline-chart")
    assert chart.get_attribute("data-granularity") == "day"


def test_lookalike_table_marks_the_differing_character(browser: Any, sample_case: Path) -> None:
    _open(browser, sample_case / "report.html")
    row = browser.find_element("css selector", "#lookalike-table tbody tr")
    lookalike = row.find_element("css selector", "td.lookalike")
    legit = row.find_element("css selector", "td.legit")
    assert lookalike.text == story.LOOKALIKE_DOMAIN
    assert legit.text == story.LOOKALIKE_OF
    marked = [m.text for m in lookalike.find_elements("css selector", "mark.diff")]
    assert marked == ["l"]
    assert [m.text for m in legit.find_elements("css selector", "mark.diff")] == ["i"]


def test_thread_shows_the_conversation_with_the_intruder_marked(
    browser: Any, sample_case: Path
) -> None:
    _open(browser, sample_case / "report.html")
    rows = browser.find_elements("css selector", "#thread .thread-table tbody tr")
    assert len(rows) == 6
    joined = [i for i, row in enumerate(rows) if "joined" in row.get_attribute("class")]
    assert joined == [2]
    assert story.LOOKALIKE_ADDRESS in rows[2].text
    assert "joined here" in rows[2].text
    assert rows[0].find_element("css selector", "td.mono").text == "2024-04-02T07:14:22.000+00:00"


def _visible_rows(driver: Any) -> int:
    count: int = driver.execute_script(
        "return Array.from(document.querySelectorAll('#findings-body tr'))"
        ".filter(r => r.getClientRects().length > 0).length"
    )
    return count


def test_findings_filter_by_rule_and_severity(browser: Any, sample_case: Path) -> None:
    from selenium.webdriver.support.ui import Select

    _open(browser, sample_case / "report.html")
    documents = _documents(sample_case / "findings.ndjson")
    by_rule = Counter(d["rule"]["id"] for d in documents)
    assert (by_rule["payment-language"], len(documents)) == (8, 22)

    shown = browser.find_element("id", "findings-shown")
    assert _visible_rows(browser) == 22
    assert shown.text == "22 of 22 findings shown"

    rule = Select(browser.find_element("id", "filter-rule"))
    severity = Select(browser.find_element("id", "filter-severity"))
    rule.select_by_value("payment-language")
    assert _visible_rows(browser) == 8
    assert shown.text == "8 of 22 findings shown"

    by_severity = Counter(d["inbec"]["finding"]["severity"] for d in documents)
    payment_medium = sum(
        1
        for d in documents
        if d["rule"]["id"] == "payment-language" and d["inbec"]["finding"]["severity"] == "medium"
    )
    assert (payment_medium, by_severity["medium"], by_severity["critical"]) == (3, 5, 5)
    severity.select_by_value("medium")
    assert _visible_rows(browser) == payment_medium
    rule.select_by_value("")
    assert _visible_rows(browser) == by_severity["medium"]
    severity.select_by_value("critical")
    assert _visible_rows(browser) == by_severity["critical"]
    cells = browser.find_elements("css selector", "#findings-body tr:not([hidden]) td.sev")
    assert {cell.text for cell in cells} == {"CRITICAL"}


def _hostile_case(root: Path) -> Path:
    """A conversation that a lookalike sender joins, with script and a link in subjects and
    a display name, and a damaged file whose name is markup."""
    evidence = root / "evidence"
    evidence.mkdir()
    first = (
        "From: Bob Payer <bob@acme-corp.com>\r\nTo: alice@globex-ind.com\r\n"
        "Date: Mon, 1 Jul 2024 09:00:00 +0000\r\nMessage-ID: <a1@acme-corp.com>\r\n"
        f"Subject: Invoice 77 payment {HOSTILE_SCRIPT}\r\n\r\nPlease confirm.\r\n"
    )
    second = (
        f'From: "Alice {HOSTILE_SCRIPT}" <alice@globex-lnd.com>\r\n'
        "To: bob@acme-corp.com\r\nDate: Tue, 2 Jul 2024 10:00:00 +0000\r\n"
        "Message-ID: <b2@globex-lnd.com>\r\nIn-Reply-To: <a1@acme-corp.com>\r\n"
        "References: <a1@acme-corp.com>\r\n"
        f"Subject: RE: Invoice 77 payment {HOSTILE_IMG} {HOSTILE_URL}\r\n\r\n"
        "New bank details attached, pay today.\r\n"
    )
    (evidence / "1.eml").write_bytes(first.encode("utf-8"))
    (evidence / "2.eml").write_bytes(second.encode("utf-8"))
    (evidence / HOSTILE_FILE_NAME).write_bytes(b"")
    out = root / "case"
    _analyze(evidence, out, "acme-corp.com", "globex-ind.com")
    return out


def test_hostile_evidence_is_shown_as_text_and_runs_nothing(browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    case = _hostile_case(tmp_path)
    page_source = (case / "report.html").read_text("utf-8")
    assert HOSTILE_URL not in page_source

    entries = _open(browser, case / "report.html")
    assert _severe(entries) == []
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    counts = browser.execute_script(
        "return [document.images.length, document.scripts.length, document.links.length,"
        " document.querySelectorAll('a').length]"
    )
    assert counts == [0, 2, 0, 0]

    findings = browser.find_element("id", "findings").text
    assert f"RE: Invoice 77 payment {HOSTILE_IMG} {DEFANGED_URL}" in findings
    thread = browser.find_elements("css selector", "#thread .thread-table tbody tr")
    assert [row.find_elements("css selector", "td")[4].text for row in thread] == [
        f"Invoice 77 payment {HOSTILE_SCRIPT}",
        f"RE: Invoice 77 payment {HOSTILE_IMG} {DEFANGED_URL}",
    ]
    assert f"Alice {HOSTILE_SCRIPT}" in thread[1].text
    failures = browser.find_elements("css selector", "#failures-table tbody tr td")
    assert failures[0].text.endswith(HOSTILE_FILE_NAME)


def test_a_script_changed_after_writing_is_blocked_by_the_policy(
    browser: Any, sample_case: Path, tmp_path: Path
) -> None:
    # Proves that the policy is enforced and that the console check above sees it.
    page = (sample_case / "report.html").read_text("utf-8")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page.replace('"use strict";', '"use strict"; window.pwned = 1;'), "utf-8")
    entries = _open(browser, tampered)
    assert any("Content Security Policy" in message for message in _severe(entries))
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert _visible_rows(browser) == 0
