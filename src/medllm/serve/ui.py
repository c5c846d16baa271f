"""``medllm ui``: the clinician's Streamlit page over the medllm API.

The page calls the API over HTTP (never the model directly), so the UI and
the API can run on different hosts: ``medllm ui --api-url http://host:8000``.
It shows the HPO findings the API read from the form (a table: term,
present or excluded, where), the ranked differential with confidence bars
and expandable evidence, red flags first, next steps and the disclaimer, and streams
answers to follow-up questions, keeping the session's history.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx

from medllm.config import DEFAULT_API_URL, DEFAULT_UI_PORT

API_URL_ENV = "MEDLLM_API_URL"
API_KEY_ENV = "MEDLLM_API_KEY"


def split_items(text: str) -> list[str]:
    """One item per line or comma: "fever, cough\\nrash" → ["fever", "cough", "rash"]."""
    return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]


def build_case(
    age: float | None, sex: str, symptoms: str, history: str, medications: str, vitals: dict, note: str
) -> dict:
    """The ``/v1/diagnose`` request body from the form's fields (blank vitals left out)."""
    case = {
        "sex": sex,
        "symptoms": split_items(symptoms),
        "history": split_items(history),
        "medications": split_items(medications),
        "note": note.strip(),
    }
    if age is not None:
        case["age"] = age
    given = {k: v for k, v in vitals.items() if v is not None}
    if given:
        case["vitals"] = given
    return case


def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def diagnose(api_url: str, api_key: str | None, case: dict, timeout: float = 120) -> dict:
    """POST the case; raise ``RuntimeError`` with the API's own message on a 4xx/5xx."""
    response = httpx.post(f"{api_url.rstrip('/')}/v1/diagnose", json=case, headers=_headers(api_key), timeout=timeout)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except json.JSONDecodeError:
            detail = response.text
        raise RuntimeError(f"API error {response.status_code}: {detail}")
    return response.json()


def stream_chat(api_url: str, api_key: str | None, messages: list[dict], timeout: float = 120) -> Iterator[str]:
    """Text pieces of a streamed ``/v1/chat/completions`` answer."""
    with httpx.stream(
        "POST",
        f"{api_url.rstrip('/')}/v1/chat/completions",
        headers=_headers(api_key),
        json={"messages": messages, "stream": True},
        timeout=timeout,
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"API error {response.status_code}: {response.read().decode(errors='replace')}")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])["choices"][0]["delta"].get("content", "")


VITAL_FIELDS = [
    ("heart_rate", "HR /min"),
    ("systolic_bp", "SBP mmHg"),
    ("diastolic_bp", "DBP mmHg"),
    ("temperature_c", "Temp °C"),
    ("respiratory_rate", "RR /min"),
    ("spo2", "SpO2 %"),
]


def page() -> None:
    """The Streamlit page (run by ``streamlit run``): connection, patient form, answer, follow-up chat."""
    import streamlit as st

    st.set_page_config(page_title="medllm — clinical decision support", layout="wide")
    st.title("medllm clinical decision support")
    with st.sidebar:
        api_url = st.text_input("API URL", os.environ.get(API_URL_ENV, DEFAULT_API_URL))
        api_key = st.text_input("API key", os.environ.get(API_KEY_ENV, ""), type="password") or None

    case = _patient_form()
    if case is not None:
        try:
            st.session_state["result"] = diagnose(api_url, api_key, case)
            st.session_state["chat"] = []
        except (RuntimeError, httpx.HTTPError) as exc:
            st.error(str(exc))

    result = st.session_state.get("result")
    if not result:
        return
    _show_result(result)
    _follow_up(api_url, api_key)


def _patient_form() -> dict | None:
    """The patient form; the ``/v1/diagnose`` request body once submitted, else None."""
    import streamlit as st

    with st.form("patient"):
        left, right = st.columns(2)
        age = left.number_input("Age (years)", min_value=0.0, max_value=130.0, value=None, step=1.0)
        sex = right.selectbox("Sex", ["unknown", "female", "male", "other"])
        symptoms = st.text_area("Presenting symptoms (one per line or comma-separated)", key="symptoms")
        history = left.text_area("History")
        medications = right.text_area("Medications")
        cols = st.columns(len(VITAL_FIELDS))
        vitals = {key: col.number_input(label, value=None) for col, (key, label) in zip(cols, VITAL_FIELDS)}
        note = st.text_area("Clinical note (free text)")
        submitted = st.form_submit_button("Suggest differential")
    return build_case(age, sex, symptoms, history, medications, vitals, note) if submitted else None


def findings_rows(findings: list[dict]) -> list[dict]:
    """The recognised-findings table: one row per HPO term read from the request."""
    return [
        {
            "HPO term": f["term_id"],
            "label": f["label"],
            "status": "excluded" if f["excluded"] else "present",
            "read from": f["input"],
            "text": f["text"],
            "note": f.get("note") or "",
        }
        for f in findings
    ]


def _evidence_lines(d: dict) -> list[str]:
    lines = [
        f"- patient: *{e['patient_finding']}* ↔ {e['finding']} (`{e['source_id']}`, similarity {e['similarity']:.2f})"
        for e in d["evidence"]
    ]
    for e in d.get("term_evidence", []):
        frequency = f"frequency {e['frequency']:.2f}" if e["frequency"] is not None else "frequency not given"
        side = "patient lacks" if e["patient_excluded"] else "patient"
        lines.append(f"- {side}: *{e['patient_label']}* ↔ {e['disease_label']} ({e['match']}, {frequency})")
    return lines


def _show_result(result: dict) -> None:
    """Red flags first, then the findings read, the differential (table and evidence), similar cases, next steps."""
    import streamlit as st

    for flag in result["red_flags"]:
        st.error(f"RED FLAG — {flag['message']}")
    if result["urgent_care"]:
        st.error(result["urgent_care"])
    for note in result.get("notes", []):
        st.warning(note)
    st.subheader("Findings recognised (HPO)")
    if result.get("findings"):
        st.table(findings_rows(result["findings"]))
    else:
        st.caption("No HPO findings recognised in the symptoms or the note.")
    st.subheader("Differential diagnosis (most likely first)")
    _differential_table(result["differential"])
    if result.get("rationale"):
        st.write(result["rationale"])
    for d in result["differential"]:
        with st.expander(f"{d['rank']}. {d['name']} — evidence"):
            st.write(d["rationale"])
            for line in _evidence_lines(d):
                st.markdown(line)
    if result["similar_cases"]:
        st.subheader("Similar published cases")
        for c in result["similar_cases"]:
            st.markdown(f"- `{c['source_id']}` {c['title']}")
    st.subheader("Next steps")
    for step in result["next_steps"]:
        st.markdown(f"- {step}")
    st.caption(f"{result['disclaimer']} Model: {result['model']}; adapter: {result['adapter']}.")


def _differential_table(differential: list[dict]) -> None:
    """One row per diagnosis, confidence drawn as a bar."""
    import pandas as pd
    import streamlit as st

    table = pd.DataFrame(
        [
            {
                "rank": d["rank"],
                "diagnosis": d["name"],
                "ICD-10": d["icd10"] or "",
                "confidence": d["confidence"],
                "source": d["disease_id"],
                "subtype series": d.get("series") or "",
            }
            for d in differential
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f")
        },
    )


def _follow_up(api_url: str, api_key: str | None) -> None:
    """The session's follow-up questions, answers streamed from ``/v1/chat/completions``."""
    import streamlit as st

    st.subheader("Follow-up questions")
    history_msgs = st.session_state.setdefault("chat", [])
    for message in history_msgs:
        st.chat_message(message["role"]).write(message["content"])
    if question := st.chat_input("Ask about this patient"):
        st.chat_message("user").write(question)
        history_msgs.append({"role": "user", "content": question})
        try:
            answer = st.chat_message("assistant").write_stream(stream_chat(api_url, api_key, history_msgs))
            history_msgs.append({"role": "assistant", "content": answer})
        except (RuntimeError, httpx.HTTPError) as exc:
            st.error(str(exc))
            history_msgs.pop()


def launch(api_url: str, port: int = DEFAULT_UI_PORT, host: str = "127.0.0.1") -> None:
    """Run this page under ``streamlit run`` against the API at ``api_url``."""
    import subprocess
    import sys

    app = os.path.join(os.path.dirname(__file__), "ui_app.py")
    env = {**os.environ, API_URL_ENV: api_url}
    sys.exit(
        subprocess.call(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                app,
                "--server.address",
                host,
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            env=env,
        )
    )
