"""OpenAI's shape: ``/v1/chat/completions`` whole and streamed, ``/v1/models``, and the official client."""

import json


def test_chat_completions_plain_and_streaming(make_client):
    client = make_client()
    request = {"messages": [{"role": "user", "content": "Fever and cough?"}], "max_tokens": 4}
    body = client.post("/v1/chat/completions", json=request).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "stop"
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert client.get("/readyz").json()["status"] == "ready"


def test_official_openai_client(live_server):
    import openai

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="tiny", max_tokens=4, messages=[{"role": "user", "content": "Fever and cough?"}]
    )
    assert reply.choices[0].message.role == "assistant"
    chunks = list(
        client.chat.completions.create(
            model="tiny", max_tokens=4, stream=True, messages=[{"role": "user", "content": "Fever?"}]
        )
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [m.id for m in client.models.list()] == ["tiny"]
