"""The Ollama backend: medllm in front of an Ollama-shaped server, and one that cannot be reached."""

from conftest import CASE
from medllm.serve.backends import OllamaEngine


def test_ollama_backend_serves_a_model_from_an_ollama_server(make_client, live_server):
    """medllm with ``serve.backend: ollama`` in front of an Ollama-shaped server (a second medllm)."""
    engine = OllamaEngine(live_server, "tiny", max_new_tokens=6, timeout_s=30)
    client = make_client(engine=engine)
    assert client.get("/readyz").json()["model"] == "tiny"
    body = client.post("/v1/diagnose", json=CASE).json()
    assert body["model"] == "tiny" and len(body["differential"]) == 4  # every disease of the tiny HPO
    assert body["rationale"] is not None and body["completion_tokens"] > 0
    reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}]}).json()
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] > 0
    with client.stream(
        "POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}], "stream": True}
    ) as response:
        assert "".join(response.iter_text()).rstrip().endswith("data: [DONE]")

    missing = make_client(engine=OllamaEngine(live_server, "no-such-model", max_new_tokens=6, timeout_s=30))
    assert missing.get("/readyz").status_code == 503


def test_an_unreachable_backend_is_a_502_and_the_server_keeps_serving(make_client):
    client = make_client(engine=OllamaEngine("http://127.0.0.1:9", "medllm", max_new_tokens=6, timeout_s=5))
    assert client.get("/readyz").status_code == 503
    diagnosed = client.post("/v1/diagnose", json=CASE)  # the ranking needs no model: its rationale is left out
    assert diagnosed.status_code == 200 and any("unavailable" in n for n in diagnosed.json()["notes"])
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}]})
    assert response.status_code == 502 and "127.0.0.1:9" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200
