"""The clinician page: its request building, and the page itself under Streamlit's AppTest."""

from pathlib import Path

from medllm.ui import build_case, split_items

APP = Path(__file__).resolve().parents[1] / "src" / "medllm" / "ui_app.py"


def test_form_fields_become_a_diagnose_request():
    case = build_case(54.0, "male", "wheezing, cough\nshortness of breath", "smoker", "", {"spo2": 91.0, "heart_rate": None}, " ")
    assert case == {"age": 54.0, "sex": "male", "symptoms": ["wheezing", "cough", "shortness of breath"],
                    "history": ["smoker"], "medications": [], "note": "", "vitals": {"spo2": 91.0}}
    assert "age" not in build_case(None, "unknown", "fever", "", "", {}, "")
    assert split_items(" a ,, b\n\n c ") == ["a", "b", "c"]


def test_page_shows_differential_and_red_flags(live_server, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDLLM_API_URL", live_server)
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    app.text_area(key="symptoms").input("crushing chest pain, sweating, shortness of breath")
    app.button[0].click().run()
    assert not app.exception
    assert any("RED FLAG" in e.value for e in app.error)
    table = app.dataframe[0].value
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert len(app.expander) == 5
    assert any("not a diagnosis" in c.value for c in app.caption)


def test_page_reports_api_errors(live_server, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDLLM_API_URL", live_server)
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    app.button[0].click().run()  # no symptoms
    assert any("API error 422" in e.value and "symptoms" in e.value for e in app.error)
