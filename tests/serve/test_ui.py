"""The clinician page: its request building, and the page itself under Streamlit's AppTest."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from medllm.serve.ui import build_case, findings_rows, split_items

APP = REPO / "src" / "medllm" / "serve" / "ui_app.py"
CHROMIUM = "/usr/bin/chromium"


def test_form_fields_become_a_diagnose_request():
    case = build_case(
        54.0, "male", "wheezing, cough\nshortness of breath", "smoker", "", {"spo2": 91.0, "heart_rate": None}, " "
    )
    assert case == {
        "age": 54.0,
        "sex": "male",
        "symptoms": ["wheezing", "cough", "shortness of breath"],
        "history": ["smoker"],
        "medications": [],
        "note": "",
        "vitals": {"spo2": 91.0},
    }
    assert "age" not in build_case(None, "unknown", "fever", "", "", {}, "")
    assert split_items(" a ,, b\n\n c ") == ["a", "b", "c"]


def submit(server_url: str, monkeypatch, symptoms: str):
    """The page, run against the live API, after entering ``symptoms`` and pressing the button."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDLLM_API_URL", server_url)
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    app.text_area(key="symptoms").input(symptoms)
    app.button[0].click().run()
    assert not app.exception
    return app


def test_page_shows_differential_and_red_flags(live_server, monkeypatch):
    app = submit(live_server, monkeypatch, "crushing chest pain, sweating, shortness of breath")
    assert any("RED FLAG" in e.value for e in app.error)
    table = app.dataframe[0].value
    assert list(table["rank"]) == [1, 2, 3, 4]  # every disease of the tiny HPO, ranked from "shortness of breath"
    assert len(app.expander) == 4
    assert any("not a diagnosis" in c.value for c in app.caption)


def test_page_shows_the_recognised_findings(live_server, monkeypatch):
    app = submit(live_server, monkeypatch, "A1\nno B1")
    table = app.table[0].value
    assert list(table["HPO term"]) == ["HP:0000003", "HP:0000006"]
    assert list(table["status"]) == ["present", "excluded"] and list(table["read from"]) == ["symptoms.0", "symptoms.1"]


def test_findings_rows_name_status_and_source():
    finding = {"term_id": "HP:0000003", "label": "A1", "excluded": False, "input": "hpo.0.id", "text": "HP:0000007"}
    (row,) = findings_rows([{**finding, "note": "HP:0000007 is an obsolete or alternative HPO id, read as HP:0000003"}])
    assert row["status"] == "present" and row["read from"] == "hpo.0.id" and "obsolete" in row["note"]
    assert findings_rows([{**finding, "excluded": True}])[0]["status"] == "excluded"


def test_page_reports_api_errors(live_server, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDLLM_API_URL", live_server)
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    app.button[0].click().run()  # no symptoms
    assert any("API error 422" in e.value and "symptoms" in e.value for e in app.error)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM} (make test installs it)"
)
def test_clinician_gets_a_differential_in_a_real_browser(live_server, tmp_path):
    """`medllm ui` against a live API, driven in headless Chromium: fill the form, see the differential."""
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    with open(tmp_path / "ui.log", "w") as log:
        ui = subprocess.Popen(
            [sys.executable, "-m", "medllm", "ui", "--api-url", live_server, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and ui.poll() is None, (tmp_path / "ui.log").read_text()
            time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.goto(url)
            page.get_by_label("Presenting symptoms (one per line or comma-separated)").fill(
                "crushing chest pain, sweating, shortness of breath"
            )
            page.get_by_role("button", name="Suggest differential").click()
            expect(page.get_by_text("RED FLAG", exact=False).first).to_be_visible(timeout=120_000)
            expect(page.get_by_text("Differential diagnosis (most likely first)")).to_be_visible()
            expect(page.get_by_text(re.compile(r"^4\. .+ — evidence$"))).to_be_visible()
            expect(page.get_by_text("not a diagnosis", exact=False)).to_be_visible()
            page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=20)
