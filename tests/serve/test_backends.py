"""The llama.cpp, Ollama and OpenAI-compatible backends: medllm in front of such a server, and ones that fail."""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import CASE, PLAIN_RESNIK, running
from medllm.errors import MedllmError
from medllm.serve.backends import LlamaCppEngine, OllamaEngine, OpenAIEngine, load_backend


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


# llama.cpp: the exported GGUF in-process, and llama-cpp-python's own OpenAI-compatible server in front of it.

HPO_BODY = {"hpo": [{"id": "HP:0000003"}, {"id": "HP:0000006"}], "top_k": 50}
FUSED = {"weight": 2.0, "temperature": 0.5}


@pytest.fixture(scope="module")
def llamacpp_engine(tiny_gguf):
    pytest.importorskip("llama_cpp")
    return LlamaCppEngine(tiny_gguf, max_new_tokens=8, n_ctx=256, n_threads=1)


def test_llamacpp_backend_chats_and_re_ranks_as_the_transformers_model_does(make_client, llamacpp_engine):
    """The f32 GGUF of the tiny model in llama.cpp: the same fused differential as the same weights in
    transformers (log-likelihoods equal to float error), and the greedy reply of the GGUF's chat template."""
    client = make_client(engine=llamacpp_engine, phenotype=PLAIN_RESNIK, rerank=FUSED)
    ready = client.get("/readyz").json()
    assert ready["candidate_scoring"] is True and ready["ranking"] == "fused" and ready["model"] == "tiny-F32.gguf"
    body = client.post("/v1/diagnose", json=HPO_BODY).json()
    expected = make_client(phenotype=PLAIN_RESNIK, rerank=FUSED).post("/v1/diagnose", json=HPO_BODY).json()
    assert body["ranking"] == expected["ranking"] == "fused"
    assert [d["disease_id"] for d in body["differential"]] == [d["disease_id"] for d in expected["differential"]]
    confidences = [d["confidence"] for d in expected["differential"]]
    assert [d["confidence"] for d in body["differential"]] == pytest.approx(confidences, abs=1e-3)

    messages = {"messages": [{"role": "user", "content": "Fever?"}]}
    reply = client.post("/v1/chat/completions", json=messages).json()
    assert reply["usage"]["completion_tokens"] == 8, "a random model never stops early: the token cap applies"
    assert reply["choices"][0]["message"]["content"] == llamacpp_engine.complete(messages["messages"])[0]
    with client.stream("POST", "/v1/chat/completions", json={**messages, "stream": True}) as response:
        assert "".join(response.iter_text()).rstrip().endswith("data: [DONE]")


def test_a_prompt_past_the_llamacpp_context_is_a_413_naming_the_limit(make_client, llamacpp_engine):
    client = make_client(engine=llamacpp_engine)
    long = {"messages": [{"role": "user", "content": "fever " * 400}]}
    response = client.post("/v1/chat/completions", json=long)
    assert response.status_code == 413 and "context window of 256" in response.json()["detail"]
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}).is_success


def test_llamacpp_backend_names_a_missing_gguf_at_start_up(tiny_dataset, tmp_path):
    def config(**serve):
        return tiny_dataset.model_copy(update={"serve": tiny_dataset.serve.model_copy(update=serve)})

    with pytest.raises(MedllmError, match=r"nothing\.gguf: GGUF file not found"):
        load_backend(config(backend="llamacpp", gguf=tmp_path / "nothing.gguf"))
    unexported = config(backend="llamacpp", gguf=None).model_copy(update={"output_dir": tmp_path / "run"})
    with pytest.raises(MedllmError, match=r"export\.json; run `medllm export` or set serve\.gguf"):
        load_backend(unexported)


@pytest.fixture(scope="module")
def llama_server(tiny_gguf):
    """llama-cpp-python's OpenAI-compatible server (what ``llama-server`` speaks) over the tiny GGUF."""
    pytest.importorskip("llama_cpp.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--n_ctx", "512"]
    server = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"{url}/models", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_openai_backend_in_front_of_llama_cpp_re_ranks_as_the_transformers_model_does(
    make_client, llama_server, tiny_llama_dir
):
    """llama-cpp-python's server echoes prompt log-probabilities: the candidates are scored through it, and the
    fused differential is the one the same weights give in-process."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    engine = OpenAIEngine(llama_server, None, max_new_tokens=6, timeout_s=120, api_key=None, tokenizer=tokenizer)
    client = make_client(engine=engine, phenotype=PLAIN_RESNIK, rerank=FUSED, backend="openai")
    ready = client.get("/readyz").json()
    assert ready["candidate_scoring"] is True and ready["ranking"] == "fused" and ready["backend"] == "openai"
    body = client.post("/v1/diagnose", json=HPO_BODY).json()
    expected = make_client(phenotype=PLAIN_RESNIK, rerank=FUSED).post("/v1/diagnose", json=HPO_BODY).json()
    assert body["ranking"] == "fused" and body["rationale"] is not None and body["completion_tokens"] > 0
    assert [d["disease_id"] for d in body["differential"]] == [d["disease_id"] for d in expected["differential"]]
    confidences = [d["confidence"] for d in expected["differential"]]
    assert [d["confidence"] for d in body["differential"]] == pytest.approx(confidences, abs=1e-3)
    reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Fever?"}]}).json()
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] > 0


def test_a_prompt_past_the_openai_servers_context_is_a_413_naming_its_limit(make_client, llama_server):
    client = make_client(engine=OpenAIEngine(llama_server, None, max_new_tokens=6, timeout_s=60, api_key=None))
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "fever " * 600}]})
    assert response.status_code == 413 and "maximum context length is 512 tokens" in response.json()["detail"]
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}).is_success


def test_an_openai_server_without_prompt_log_probabilities_serves_the_phenotype_ranking_saying_why(
    make_client, live_server, tiny_llama_dir
):
    """A chat-only server (a second medllm: no ``/v1/completions``) cannot score: the phenotype ranking is
    served, and says so; so is it without a tokenizer to render the prompt with."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    for engine in (
        OpenAIEngine(f"{live_server}/v1", None, max_new_tokens=6, timeout_s=30, api_key=None, tokenizer=tokenizer),
        OpenAIEngine(f"{live_server}/v1", None, max_new_tokens=6, timeout_s=30, api_key=None),
    ):
        client = make_client(engine=engine, phenotype=PLAIN_RESNIK, rerank=FUSED, backend="openai")
        ready = client.get("/readyz").json()
        assert ready["candidate_scoring"] is False and ready["ranking"] == "phenotype"
        body = client.post("/v1/diagnose", json=HPO_BODY).json()
        assert body["ranking"] == "phenotype" and body["rationale"] is not None
        assert body["notes"][0].startswith("The openai backend gives no log-probabilities for the candidates")


def test_a_scoring_server_that_fails_mid_way_serves_the_phenotype_ranking_saying_so(make_client, tiny_llama_dir):
    """Scoring checked at start, then the server breaks: the differential is still served, in phenotype order."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from transformers import AutoTokenizer

    flaky, calls = FastAPI(), []

    def completions():
        calls.append(1)
        if len(calls) > 1:
            return PlainTextResponse("overloaded", status_code=503)
        return {
            "choices": [{"text": "", "logprobs": {"token_logprobs": [None, -1.0, -2.0]}}],
            "usage": {"completion_tokens": 1},
        }

    flaky.get("/v1/models")(lambda: {"object": "list", "data": [{"id": "m", "object": "model"}]})
    flaky.post("/v1/completions")(completions)
    flaky.post("/v1/chat/completions")(lambda: PlainTextResponse("down", status_code=503))
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    with running(flaky) as url:
        engine = OpenAIEngine(f"{url}/v1", "m", max_new_tokens=6, timeout_s=10, api_key=None, tokenizer=tokenizer)
        client = make_client(engine=engine, phenotype=PLAIN_RESNIK, rerank=FUSED, backend="openai")
        assert client.get("/readyz").json()["ranking"] == "fused"
        response = client.post("/v1/diagnose", json=HPO_BODY)
        assert response.status_code == 200 and response.json()["ranking"] == "phenotype"
        assert response.json()["notes"][0].startswith("The openai backend failed to score the candidates")
        assert response.json()["differential"] and response.json()["rationale"] is None


def test_llamacpp_contexts_answer_requests_at_once(tiny_gguf):
    """With two contexts a request is answered while a stream holds the other; the answers are the same."""
    pytest.importorskip("llama_cpp")
    from concurrent.futures import ThreadPoolExecutor

    engine = LlamaCppEngine(tiny_gguf, max_new_tokens=8, n_ctx=256, n_threads=1, parallel=2)
    messages = [{"role": "user", "content": "Fever?"}]
    alone = engine.complete(messages)
    stream = engine.stream(messages)
    first = next(stream)  # this stream now holds one context
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(engine.complete, messages).result(timeout=60) == alone
    assert (first + "".join(stream)).strip() == alone[0]
