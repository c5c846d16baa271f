"""``medllm push`` against a real registry (Debian's docker-registry, distribution 2.8) and an Ollama-style token
gate."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conftest import running
from medllm.cli import main
from medllm.errors import MedllmError
from medllm.export.ollama import MANIFEST_MEDIA_TYPE
from medllm.export.push import push

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OLLAMA = "application/vnd.ollama.image."
MB = 1024 * 1024
EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """A docker-registry on 127.0.0.1 with its own config and storage; stopped by PID at the end."""
    if not Path(REGISTRY_BIN).is_file():
        pytest.skip("needs Debian's docker-registry (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    url = f"http://127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                "http": {"addr": url.removeprefix("http://")},
            }
        )
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def make_layout(models_dir: Path, name: str, model_bytes: int = 3 * MB + 123) -> tuple[bytes, dict[str, bytes]]:
    """An Ollama models folder as ``medllm export`` writes it, from random blobs; → (manifest, blobs by digest)."""
    blobs: dict[str, bytes] = {}

    def add(media_type: str, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (models_dir / "blobs").mkdir(parents=True, exist_ok=True)
        (models_dir / "blobs" / digest.replace(":", "-")).write_bytes(data)
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    config = add(
        "application/vnd.docker.container.image.v1+json",
        json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": "135M",
                "file_type": "F16",
                "architecture": "amd64",
                "os": "linux",
                "nonce": secrets.token_hex(8),
            }
        ).encode(),
    )
    layers = [
        add(OLLAMA + "model", os.urandom(model_bytes)),
        add(OLLAMA + "template", f"{{{{ .Prompt }}}} {secrets.token_hex(4)}".encode()),
        add(OLLAMA + "system", f"You are a clinical assistant {secrets.token_hex(4)}.".encode()),
        add(OLLAMA + "params", json.dumps({"temperature": 0.2, "seed": secrets.randbelow(1000)}).encode()),
        add(OLLAMA + "license", os.urandom(5000)),
    ]
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": layers}, indent=2
    ).encode()
    namespace, model_tag = name.split("/")
    model, tag = model_tag.split(":")
    path = models_dir / "manifests" / "registry.ollama.ai" / namespace / model / tag
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)
    return manifest, blobs


def assert_in_registry(url: str, name: str, manifest: bytes, blobs: dict[str, bytes]) -> None:
    """GET the manifest and every blob back and check them byte for byte."""
    repo, tag = name.split(":")
    got = httpx.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_MEDIA_TYPE})
    assert got.status_code == 200 and got.content == manifest
    assert got.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    for digest in blobs:
        blob = httpx.get(f"{url}/v2/{repo}/blobs/{digest}")
        assert blob.status_code == 200 and "sha256:" + hashlib.sha256(blob.content).hexdigest() == digest


def manifest_status(url: str, name: str) -> int:
    repo, tag = name.split(":")
    return httpx.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_MEDIA_TYPE}).status_code


class FaultyNetwork(httpx.BaseTransport):
    """The real network plus scripted faults, per method, for its next calls: None (pass), an HTTP status
    (answered here), "drop" (connection lost before the registry sees it), "lost" (registry acts, answer lost)."""

    def __init__(self, **faults: list) -> None:
        self.inner = httpx.HTTPTransport()
        self.faults = faults
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        fault = self.faults.get(request.method, []).pop(0) if self.faults.get(request.method) else None
        if fault == "drop":
            raise httpx.ReadError("connection reset by peer", request=request)
        if isinstance(fault, int):
            return httpx.Response(fault, json={"errors": [{"code": "UNAVAILABLE", "message": "scripted"}]})
        response = self.inner.handle_request(request)
        if fault == "lost":
            response.read()
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_push_round_trip_then_repush_skips_everything(registry, tmp_path):
    manifest, blobs = make_layout(tmp_path, "clinic/medllm:0.1")
    summary = push(tmp_path, "clinic/medllm:0.1", registry=registry, insecure=True, chunk_size=MB)
    assert set(summary["uploaded"]) == set(blobs) and summary["skipped"] == []
    assert summary["bytes_uploaded"] == sum(map(len, blobs.values()))
    assert_in_registry(registry, "clinic/medllm:0.1", manifest, blobs)

    network = FaultyNetwork()
    again = push(tmp_path, "clinic/medllm:0.1", registry=registry, insecure=True, transport=network)
    assert again["uploaded"] == [] and set(again["skipped"]) == set(blobs) and again["bytes_uploaded"] == 0
    assert network.calls == ["HEAD"] * len(blobs) + ["PUT"]  # HEAD each blob, then the manifest only


def test_interrupted_push_resumes_with_only_the_missing_blobs(registry, tmp_path):
    manifest, blobs = make_layout(tmp_path, "clinic/resume:latest")
    config_digest = next(iter(blobs))
    # config: 1 PATCH; the model: 4 PATCHes of 1 MB, and the network dies during its 2nd
    dying = FaultyNetwork(PATCH=[None, None, "lost"] + ["drop"] * 20)
    with pytest.raises(MedllmError, match=r"blob sha256:.*gave up after 2 attempts"):
        push(
            tmp_path,
            "clinic/resume",
            registry=registry,
            insecure=True,
            chunk_size=MB,
            retries=1,
            backoff=0.01,
            transport=dying,
        )
    assert manifest_status(registry, "clinic/resume:latest") == 404

    summary = push(tmp_path, "clinic/resume", registry=registry, insecure=True, chunk_size=MB)
    assert summary["skipped"] == [config_digest]
    assert set(summary["uploaded"]) == set(blobs) - {config_digest}
    assert_in_registry(registry, "clinic/resume:latest", manifest, blobs)


def test_5xx_and_dropped_connections_are_retried(registry, tmp_path):
    manifest, blobs = make_layout(tmp_path, "clinic/flaky:1")
    network = FaultyNetwork(HEAD=[503], POST=["drop"], PATCH=[None, None, "lost"], PUT=[502, None, None, 500])
    summary = push(
        tmp_path,
        "clinic/flaky:1",
        registry=registry,
        insecure=True,
        chunk_size=MB,
        retries=3,
        backoff=0.01,
        transport=network,
    )
    assert set(summary["uploaded"]) == set(blobs)
    assert_in_registry(registry, "clinic/flaky:1", manifest, blobs)


def test_manifest_naming_a_blob_the_registry_lacks_fails_with_its_error_code(registry, tmp_path):
    make_layout(tmp_path, "clinic/gap:1")
    liar = FaultyNetwork(HEAD=[None, 200])  # the model blob is "already there"
    with pytest.raises(MedllmError, match=r"manifest clinic/gap:1: registry answered 400 MANIFEST_BLOB_UNKNOWN"):
        push(tmp_path, "clinic/gap:1", registry=registry, insecure=True, transport=liar)
    assert manifest_status(registry, "clinic/gap:1") == 404


def test_blob_missing_from_the_export_fails(registry, tmp_path):
    _manifest, blobs = make_layout(tmp_path, "clinic/missing:1")
    missing = list(blobs)[2]
    (tmp_path / "blobs" / missing.replace(":", "-")).unlink()
    with pytest.raises(MedllmError, match=f"blob {missing} is neither in the registry nor in the export"):
        push(tmp_path, "clinic/missing:1", registry=registry, insecure=True)
    assert manifest_status(registry, "clinic/missing:1") == 404


def test_corrupt_blob_fails_before_upload(registry, tmp_path):
    _manifest, blobs = make_layout(tmp_path, "clinic/corrupt:1")
    config = tmp_path / "blobs" / next(iter(blobs)).replace(":", "-")
    config.write_bytes(config.read_bytes().replace(b"llama", b"llamb"))
    network = FaultyNetwork()
    with pytest.raises(MedllmError, match=f"{config} is corrupt"):
        push(tmp_path, "clinic/corrupt:1", registry=registry, insecure=True, transport=network)
    assert network.calls == ["HEAD"]


@pytest.mark.parametrize(
    "name",
    [
        "medllm",
        "Clinic/medllm",
        "clinic/med/llm",
        "clinic/medllm:",
        "clinic/..",
        "/medllm",
        "clinic/med llm",
        "clinic/medllm:v1:2",
    ],
)
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(MedllmError, match="invalid model name"):
        push(tmp_path, name, registry="http://127.0.0.1:9", insecure=True)


def test_plain_http_needs_insecure(registry, tmp_path):
    make_layout(tmp_path, "clinic/tls:1")
    with pytest.raises(MedllmError, match="--insecure"):
        push(tmp_path, "clinic/tls:1", registry=registry)


def test_cli_push(registry, tmp_path, capsys):
    manifest, blobs = make_layout(tmp_path / "export", "clinic/cli:0.2")
    argv = ["push", "clinic/cli:0.2", "--registry", registry, "--insecure", "--models-dir", str(tmp_path / "export")]
    assert main(argv) == 0
    assert f"pushed clinic/cli:0.2 to {registry}" in capsys.readouterr().out
    assert_in_registry(registry, "clinic/cli:0.2", manifest, blobs)
    assert main(["push", "clinic/nothing:0.2", "--models-dir", str(tmp_path / "export")]) == 2
    assert "no Ollama model clinic/nothing:0.2" in capsys.readouterr().err


# --- Ollama's signed-challenge auth ---------------------------------------------------------------


class TokenGate:
    """registry.ollama.ai in miniature: 401 + Bearer challenge, a token for a request signed by a
    registered key (checked as the hub does), then the Bearer requests proxied to the docker-registry."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.keys: set[str] = set()
        self.tokens: list[str] = []
        self.app = Starlette(
            routes=[
                Route("/token", self.token),
                Route("/v2/{path:path}", self.proxy, methods=["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]),
            ]
        )

    async def token(self, request: Request) -> Response:
        public, _, signature = request.headers.get("authorization", "").partition(":")
        query = request.scope["query_string"].decode()
        url = f"{request.url.scheme}://{request.headers['host']}{request.scope['raw_path'].decode()}?{query}"
        params = parse_qs(query)
        try:
            key = serialization.load_ssh_public_key(b"ssh-ed25519 " + public.encode())
            raw = base64.b64decode(signature, validate=True)
            assert len(raw) == 64 and public in self.keys
            key.verify(raw, f"GET,{url},{EMPTY_BODY}".encode())
            assert abs(int(params["ts"][0]) - time.time()) < 300 and params["nonce"] and params["service"]
            assert list(params) == sorted(params) and params["scope"][0].startswith("repository:clinic/")
        except (ValueError, AssertionError, KeyError, InvalidSignature):
            return JSONResponse(
                {"errors": [{"code": "UNAUTHORIZED", "message": "unknown key or bad signature"}]}, status_code=401
            )
        self.tokens.append(secrets.token_urlsafe(16))
        return JSONResponse({"token": self.tokens[-1]})

    async def proxy(self, request: Request) -> Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            repo = request.path_params["path"].split("/blobs/")[0].split("/manifests/")[0]
            challenge = f'Bearer realm="{request.base_url}token",service="gate",scope="repository:{repo}:push,pull"'
            return JSONResponse(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        headers = {k: v for k, v in request.headers.items() if k in ("content-type", "content-range", "accept", "host")}
        target = f"{self.upstream}{request.scope['raw_path'].decode()}?{request.scope['query_string'].decode()}"
        async with httpx.AsyncClient() as client:
            answer = await client.request(request.method, target, content=await request.body(), headers=headers)
        keep = {
            k: v
            for k, v in answer.headers.items()
            if k not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        }
        return Response(answer.content, status_code=answer.status_code, headers=keep)


@pytest.fixture(scope="module")
def gate(registry):
    token_gate = TokenGate(registry)
    with running(token_gate.app) as url:
        token_gate.url = url
        yield token_gate


def write_key(path: Path) -> str:
    """An OpenSSH ed25519 key file; → its base64 public key, as registered on ollama.com."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .split()[1]
        .decode()
    )


def test_push_through_the_token_gate_with_a_registered_key(gate, registry, tmp_path):
    manifest, blobs = make_layout(tmp_path / "models", "clinic/authed:1")
    gate.keys.add(write_key(tmp_path / "id_ed25519"))
    issued = len(gate.tokens)
    summary = push(
        tmp_path / "models",
        "clinic/authed:1",
        registry=gate.url,
        insecure=True,
        key_path=tmp_path / "id_ed25519",
        chunk_size=MB,
    )
    assert set(summary["uploaded"]) == set(blobs)
    assert len(gate.tokens) == issued + 1  # one token, reused for every request
    assert_in_registry(registry, "clinic/authed:1", manifest, blobs)


def test_missing_key_is_created_and_an_unregistered_key_is_refused(gate, registry, tmp_path, capsys):
    manifest, blobs = make_layout(tmp_path / "models", "clinic/newkey:1")
    key_path = tmp_path / ".ollama" / "id_ed25519"
    with pytest.raises(MedllmError, match=r"refused a token \(401 UNAUTHORIZED.*id_ed25519.pub"):
        push(tmp_path / "models", "clinic/newkey:1", registry=gate.url, insecure=True, key_path=key_path)
    assert manifest_status(registry, "clinic/newkey:1") == 404

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    private = key_path.read_text()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    public_line = key_path.with_name("id_ed25519.pub").read_text().strip()
    out = capsys.readouterr()
    assert public_line in out.out
    body = [line for line in private.splitlines() if "PRIVATE KEY" not in line]
    assert not any(line in out.out + out.err for line in body) and "PRIVATE KEY" not in out.out + out.err

    gate.keys.add(public_line.split()[1])  # the user registers it on ollama.com
    push(tmp_path / "models", "clinic/newkey:1", registry=gate.url, insecure=True, key_path=key_path)
    assert_in_registry(registry, "clinic/newkey:1", manifest, blobs)


def test_hub_redirecting_parts_to_object_storage(tmp_path):
    """registry.ollama.ai's way: relative upload Locations, each PATCH answered 307 to object storage (which
    must not see the token), the commit checked against the parts' digest and md5 etag."""
    manifest, blobs = make_layout(tmp_path / "models", "clinic/hub:1")
    write_key(tmp_path / "key")
    parts: dict[str, dict[int, bytes]] = {}
    stored: dict[str, bytes] = {}

    def hub(request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host == "storage.example":
            assert "authorization" not in request.headers
            upload, n = url.path.strip("/").split("/")
            parts[upload][int(n)] = request.content
            return httpx.Response(200)
        if url.path == "/v2/token":
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("authorization") != "Bearer t0k":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://registry.ollama.ai/v2/token",'
                    'service="ollama.com",scope="repository:clinic/hub:push"'
                },
            )
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            parts[upload := str(len(parts))] = {}
            return httpx.Response(202, headers={"Location": f"/v2/clinic/hub/blobs/uploads/{upload}?n=0"})
        upload, n = url.path.rsplit("/", 1)[1], int(url.params.get("n", -1))
        if request.method == "PATCH":
            return httpx.Response(
                307,
                headers={
                    "Location": f"https://storage.example/{upload}/{n}",
                    "Docker-Upload-Location": f"/v2/clinic/hub/blobs/uploads/{upload}?n={n + 1}",
                },
            )
        if url.path.endswith("/manifests/1"):
            assert request.headers["content-type"] == MANIFEST_MEDIA_TYPE and set(blobs) <= set(stored)
            stored["manifest"] = request.content
            return httpx.Response(201)
        data = [parts[upload][i] for i in sorted(parts[upload])]
        md5s = b"".join(hashlib.md5(part).digest() for part in data)
        assert url.params["etag"] == f"{hashlib.md5(md5s).hexdigest()}-{len(data)}"
        assert url.params["digest"] == "sha256:" + hashlib.sha256(b"".join(data)).hexdigest()
        stored[url.params["digest"]] = b"".join(data)
        return httpx.Response(201)

    summary = push(
        tmp_path / "models",
        "clinic/hub:1",
        key_path=tmp_path / "key",
        chunk_size=MB,
        transport=httpx.MockTransport(hub),
    )
    assert set(summary["uploaded"]) == set(blobs)
    assert stored == {**blobs, "manifest": manifest}
    assert max(len(p) for p in parts.values()) == 4  # the 3 MB model went up in 1 MB parts


def test_token_realm_on_another_host_is_refused(tmp_path):
    make_layout(tmp_path, "clinic/realm:1")
    challenge = 'Bearer realm="https://elsewhere.example/token",service="x",scope="repository:clinic/realm:push"'
    hub = httpx.MockTransport(lambda request: httpx.Response(401, headers={"WWW-Authenticate": challenge}))
    with pytest.raises(MedllmError, match=r"refusing to sign a token request for realm https://elsewhere.example"):
        push(tmp_path, "clinic/realm:1", key_path=tmp_path / "key", transport=hub)
    assert not (tmp_path / "key").exists()


# --- --via-ollama ---------------------------------------------------------------------------------


def test_via_ollama_runs_create_then_push(tmp_path, monkeypatch):
    bin_dir, models = tmp_path / "bin", tmp_path / "export" / "ollama"
    bin_dir.mkdir()
    models.mkdir(parents=True)
    (models.parent / "Modelfile").write_text("FROM ./model.gguf\n")
    (bin_dir / "ollama").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    (bin_dir / "ollama").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["push", "clinic/medllm:0.1", "--via-ollama", "--models-dir", str(models)]) == 0
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"create clinic/medllm:0.1 -f {models.parent / 'Modelfile'}",
        "push clinic/medllm:0.1",
    ]


def test_via_ollama_without_the_binary(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["push", "clinic/medllm:0.1", "--via-ollama", "--models-dir", str(tmp_path)]) == 2
    assert "needs the `ollama` binary on PATH" in capsys.readouterr().err
