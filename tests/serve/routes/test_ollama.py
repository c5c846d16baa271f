"""Ollama's shape: ``/api/chat`` and ``/api/generate`` whole and streamed, ``/api/tags``, and the official client."""

import json


def test_ollama_shape_plain_and_streaming(make_client):
    client = make_client()
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "Fever?"}], "options": {"num_predict": 3}}
    body = client.post("/api/chat", json={**chat, "stream": False}).json()
    assert body["done"] and body["message"]["role"] == "assistant"
    with client.stream("POST", "/api/chat", json=chat) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] and not any(line["done"] for line in lines[:-1])
    body = client.post(
        "/api/generate", json={"prompt": "Fever?", "stream": False, "options": {"num_predict": 3}}
    ).json()
    assert body["done"] and "response" in body
    assert client.get("/api/tags").json()["models"][0]["name"] == "tiny"
    assert client.post("/api/chat", json={**chat, "options": {"num_predict": 0}}).status_code == 422


def test_official_ollama_client(live_server):
    import ollama

    local = ollama.Client(host=live_server)
    answer = local.chat(model="tiny", messages=[{"role": "user", "content": "Fever?"}], options={"num_predict": 3})
    assert answer.message.role == "assistant" and answer.done
    parts = list(
        local.chat(
            model="tiny", messages=[{"role": "user", "content": "Fever?"}], stream=True, options={"num_predict": 3}
        )
    )
    assert parts[-1].done
    assert local.generate(model="tiny", prompt="Fever?", options={"num_predict": 3}).done
    assert [m.model for m in local.list().models] == ["tiny"]
