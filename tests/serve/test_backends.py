"""The Ollama and OpenAI-compatible backends: medllm in front of such a server, and ones that fail."""

from conftest import CASE, running
from medllm.serve.backends import OllamaEngine, OpenAIEngine


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


def test_openai_backend_serves_through_an_openai_compatible_server(make_client, live_server):
    """medllm with ``serve.backend: openai`` in front of an OpenAI-compatible server (a second medllm's ``/v1``)."""
    client = make_client(engine=OpenAIEngine(f"{live_server}/v1", None, max_new_tokens=6, timeout_s=30, api_key=None))
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "tiny", "the first model the server lists"
    body = client.post("/v1/diagnose", json=CASE).json()
    assert body["model"] == "tiny" and len(body["differential"]) == 4  # the tiny base has 4 diseases
    reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}]}).json()
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] > 0
    with client.stream(
        "POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}], "stream": True}
    ) as response:
        assert "".join(response.iter_text()).rstrip().endswith("data: [DONE]")

    named = OpenAIEngine(f"{live_server}/v1", "no-such-model", max_new_tokens=6, timeout_s=30, api_key=None)
    assert make_client(engine=named).get("/readyz").status_code == 503


def test_an_openai_server_that_answers_garbage_is_a_502_naming_it(make_client):
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    garbage = FastAPI()
    garbage.get("/v1/models")(lambda: {"object": "list", "data": [{"id": "m", "object": "model"}]})
    garbage.post("/v1/chat/completions")(lambda: PlainTextResponse("<html>oops</html>", status_code=500))
    with running(garbage) as url:
        client = make_client(engine=OpenAIEngine(f"{url}/v1", "m", max_new_tokens=6, timeout_s=10, api_key=None))
        assert client.get("/readyz").status_code == 200
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}]})
        assert chat.status_code == 502 and "OpenAI-compatible server" in chat.json()["detail"]
        assert url in chat.json()["detail"] and client.get("/healthz").status_code == 200
        body = client.post("/v1/diagnose", json=CASE).json()  # the ranking without the model, saying why
        assert body["rationale"] is None and body["differential"] and url in body["notes"][0]
    down = make_client(engine=OpenAIEngine(f"{url}/v1", "m", max_new_tokens=6, timeout_s=5, api_key=None))
    assert down.get("/readyz").status_code == 503
    assert down.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}).status_code == 502
