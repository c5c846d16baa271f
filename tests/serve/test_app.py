"""The app around the routes: body limits, the API key, the audit log and admission control."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from conftest import CASE, running


def test_malformed_and_oversized_bodies(make_client):
    client = make_client(max_request_bytes=2048)
    response = client.post("/v1/diagnose", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]
    response = client.post("/v1/diagnose", content=b"\xff\xfe" * 10, headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = client.post("/v1/diagnose", json={**CASE, "history": ["y" * 100] * 30})
    assert response.status_code == 413


def test_a_chunked_body_is_capped_as_it_arrives(make_client):
    body = json.dumps({**CASE, "history": ["y" * 100] * 30}).encode()

    def chunks():  # no Content-Length: sent with Transfer-Encoding: chunked
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    with running(make_client(max_request_bytes=2048).app) as url:
        response = httpx.post(f"{url}/v1/diagnose", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and "2048" in response.json()["detail"]
        small = json.dumps(CASE).encode()
        response = httpx.post(
            f"{url}/v1/diagnose",
            content=iter([small[:40], small[40:]]),
            timeout=30,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text


def test_api_key_is_required_when_configured(make_client, monkeypatch):
    monkeypatch.setenv("MEDLLM_API_KEY", "s3cret")
    client = make_client()
    assert client.post("/v1/diagnose", json=CASE).status_code == 401
    assert client.post("/v1/diagnose", json=CASE, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/v1/diagnose", json=CASE, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_audit_log_has_no_patient_text(make_client, tmp_path, caplog):
    audit = tmp_path / "audit.jsonl"
    client = make_client(audit_log=str(audit))
    client.post("/v1/diagnose", json={**CASE, "note": "Mrs Jane Example, lives at 1 Test Road"})
    record = json.loads(audit.read_text().splitlines()[0])
    assert set(record) == {"request_id", "time", "model", "adapter", "input_sha256", "latency_s"}
    assert "Jane" not in audit.read_text() and "Jane" not in caplog.text


def test_overload_answers_503_and_the_server_keeps_serving(make_client, monkeypatch):
    client = make_client(max_pending=1)
    engine = client.app.state.serve.engine
    slow = threading.Event()
    real_complete = engine.complete

    def complete(messages, max_new_tokens=None):
        slow.wait(timeout=5)
        return real_complete(messages, max_new_tokens)

    monkeypatch.setattr(engine, "complete", complete)
    with running(client.app) as url:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/diagnose", json=CASE, timeout=30) for _ in range(4)]
            time.sleep(1.0)
            slow.set()
            statuses = sorted(f.result().status_code for f in futures)
        assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}
        assert httpx.post(f"{url}/v1/diagnose", json=CASE, timeout=30).status_code == 200
