"""``medllm push``: upload an exported Ollama model to a registry the way ``ollama push`` does.

Registries speak the Docker Registry HTTP API v2. registry.ollama.ai also
answers with a Bearer challenge; Ollama meets it with a token request signed
by the user's ed25519 key ``~/.ollama/id_ed25519``, whose public half is
registered on their ollama.com account (mirrored from Ollama's
``server/auth.go``, ``auth/auth.go`` and ``server/upload.go``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tqdm import tqdm

from medllm.config import DEFAULT_REGISTRY, OLLAMA_REGISTRY_HOST
from medllm.errors import MedllmError
from medllm.export.ollama import MANIFEST_MEDIA_TYPE, blob_path, parse_model_name, read_layout

logger = logging.getLogger(__name__)

DEFAULT_KEY = Path("~/.ollama/id_ed25519")
CHUNK_SIZE = 100 * 1000 * 1000  # Ollama's smallest upload part
# The third field of every signed token request: base64 of the hex sha256 of the (empty) body.
_EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()

T = TypeVar("T")


class _Transient(Exception):
    """A 5xx answer: worth retrying, like a dropped connection."""


def verify_blob(path: Path, digest: str, size: int) -> None:
    """Refuse to upload a file whose content is not what its name and the manifest say."""
    if not path.is_file():
        raise MedllmError(f"blob {digest} is neither in the registry nor in the export ({path} is missing)")
    with path.open("rb") as fh:
        actual = "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    if actual != digest or path.stat().st_size != size:
        raise MedllmError(
            f"{path} is corrupt: sha256 {actual[7:]} and {path.stat().st_size} bytes, "
            f"but the manifest says {digest[7:]} and {size} bytes"
        )


def load_or_create_key(key_path: Path) -> Ed25519PrivateKey:
    """The Ollama key; a missing one is created (as ``ollama serve`` would) and its public half printed."""
    if key_path.is_file():
        key = serialization.load_ssh_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise MedllmError(f"{key_path} is not an ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(private)
    key_path.with_name(key_path.name + ".pub").write_bytes(public + b"\n")
    print(
        f"created a new Ollama key {key_path}; add this public key to your ollama.com account "
        f"(Settings → Ollama keys), then push again:\n{public.decode()}"
    )
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """``<base64 ssh public key>:<base64 raw 64-byte ed25519 signature>``, Ollama's ``auth.Sign`` format."""
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.split()[1].decode()}:{base64.b64encode(key.sign(data)).decode()}"


def token_request(challenge: str, url: httpx.URL, key_path: Path) -> httpx.Request:
    """The signed ``GET <realm>?nonce&scope&service&ts`` of Ollama's ``getAuthorizationToken``."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = httpx.URL(params.get("realm", ""))
    if (realm.scheme, realm.host, realm.port) != (url.scheme, url.host, url.port):
        raise MedllmError(
            f"refusing to sign a token request for realm {realm or '(none)'}: "
            f"it is not on the registry {url.scheme}://{url.netloc.decode()}"
        )
    query = parse_qsl(realm.query.decode(), keep_blank_values=True)
    query += [("service", params.get("service", ""))]
    query += [("scope", scope) for scope in params.get("scope", "").split(" ")]
    query += [
        ("ts", str(int(time.time()))),
        ("nonce", base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()),
    ]
    signed_url = f"{realm.copy_with(query=None, fragment=None)}?{urlencode(sorted(query, key=lambda kv: kv[0]))}"
    signature = sign(load_or_create_key(key_path), f"GET,{signed_url},{_EMPTY_BODY}".encode())
    return httpx.Request("GET", signed_url, headers={"Authorization": signature})


class OllamaAuth(httpx.Auth):
    """Meets a registry's Bearer challenge with a signed token request, then sends ``Bearer <token>``."""

    requires_response_body = True

    def __init__(self, key_path: Path) -> None:
        self.key_path = Path(key_path).expanduser()
        self.token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        answer = yield token_request(challenge, request.url, self.key_path)
        if answer.status_code >= 500:
            return  # handed back as the request's answer, so the retry loop tries again
        if answer.status_code >= 400:
            raise MedllmError(
                f"{answer.url.copy_with(query=None)} refused a token ({_describe(answer)}): "
                f"is {self.key_path}.pub added to your ollama.com account?"
            )
        try:
            self.token = answer.json()["token"]
        except (ValueError, KeyError, TypeError):
            raise MedllmError(f"{answer.url.copy_with(query=None)} answered without a token") from None
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _describe(response: httpx.Response) -> str:
    """The status and the registry's error codes and messages, e.g. ``400 MANIFEST_BLOB_UNKNOWN: ...``."""
    try:
        detail = "; ".join(f"{e['code']}: {e['message']}" for e in response.json()["errors"])
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip()[:300] or response.reason_phrase
    return f"{response.status_code} {detail}"


def _request(client: httpx.Client, method: str, url: str | httpx.URL, **kwargs) -> httpx.Response:
    """One request; a 5xx answer raises ``_Transient`` so the caller's retry loop sees it."""
    response = client.request(method, url, **kwargs)
    if response.status_code >= 500:
        raise _Transient(_describe(response))
    return response


def _expect(response: httpx.Response, step: str, *ok: int) -> httpx.Response:
    """Any other status stops the push with the step and the registry's own error code."""
    if response.status_code not in ok:
        raise MedllmError(f"{step}: registry answered {_describe(response)}")
    return response


def _retrying(step: str, retries: int, backoff: float, attempt: Callable[[], T]) -> T:
    """``attempt()``, retried with exponential backoff on 5xx answers and dropped connections."""
    for n in range(retries + 1):
        try:
            return attempt()
        except (_Transient, httpx.TransportError) as exc:
            failure = f"{type(exc).__name__}: {exc}" if isinstance(exc, httpx.TransportError) else str(exc)
        if n < retries:
            logger.warning("%s: %s; retrying in %.1fs", step, failure, backoff * 2**n)
            time.sleep(backoff * 2**n)
    raise MedllmError(f"{step}: {failure} (gave up after {retries + 1} attempts)")


def _next_url(response: httpx.Response, step: str) -> httpx.URL:
    """Where the upload continues: ``Docker-Upload-Location`` first (as Ollama reads it), else ``Location``."""
    location = response.headers.get("Docker-Upload-Location") or response.headers.get("Location")
    if not location:
        raise MedllmError(f"{step}: registry answered {response.status_code} without an upload Location")
    return response.url.join(location)


def _upload_blob(
    client: httpx.Client, auth: OllamaAuth, repo: str, path: Path, digest: str, size: int, chunk_size: int, bar: tqdm
) -> None:
    """One upload session: POST, PATCH the file in order (PUT a part where the hub redirects), commit."""
    step = f"blob {digest}"
    bar.reset(total=size)
    url = _next_url(_expect(_request(client, "POST", f"{repo}/blobs/uploads/", auth=auth), step, 202), step)
    part_md5s = []
    with path.open("rb") as fh:
        for offset in range(0, size, chunk_size):
            data = fh.read(chunk_size)
            headers = {
                "Content-Type": "application/octet-stream",
                "X-Redirect-Uploads": "1",
                "Content-Range": f"{offset}-{offset + len(data) - 1}",
            }
            response = _request(client, "PATCH", url, content=data, headers=headers, auth=auth)
            if response.status_code == 307:  # the hub sends parts to object storage, without our token
                _expect(
                    _request(
                        client,
                        "PUT",
                        response.headers["Location"],
                        content=data,
                        headers={"Content-Type": "application/octet-stream"},
                    ),
                    f"{step} (storage)",
                    200,
                    201,
                )
            else:
                _expect(response, step, 202)
            url = _next_url(response, step)
            part_md5s.append(hashlib.md5(data, usedforsecurity=False).digest())
            bar.update(len(data))
    etag = f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
    _expect(
        _request(
            client,
            "PUT",
            url.copy_merge_params({"digest": digest, "etag": etag}),
            headers={"Content-Type": "application/octet-stream"},
            auth=auth,
        ),
        step,
        201,
    )


def _push_blob(
    client: httpx.Client,
    auth: OllamaAuth,
    repo: str,
    models_dir: Path,
    blob: dict,
    chunk_size: int,
    retries: int,
    backoff: float,
) -> bool:
    """Upload one manifest blob unless the registry has it already; return whether it was uploaded."""
    digest, size = blob["digest"], blob["size"]
    step = f"blob {digest}"
    head = _retrying(
        step, retries, backoff, functools.partial(_request, client, "HEAD", f"{repo}/blobs/{digest}", auth=auth)
    )
    if head.status_code == 200:
        logger.info("%s %s already in the registry", digest[7:19], blob["mediaType"])
        return False
    _expect(head, step, 404)
    path = blob_path(models_dir, digest)
    verify_blob(path, digest, size)
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"pushing {digest[7:19]}") as bar:
        _retrying(
            step,
            retries,
            backoff,
            functools.partial(_upload_blob, client, auth, repo, path, digest, size, chunk_size, bar),
        )
    return True


def registry_url(registry: str, insecure: bool) -> str:
    """The registry's base URL; plain http only with ``insecure``."""
    if "://" not in registry:
        registry = f"{'http' if insecure else 'https'}://{registry}"
    scheme = httpx.URL(registry).scheme
    if scheme not in ("http", "https") or (scheme == "http" and not insecure):
        raise MedllmError(f"refusing registry {registry}: use https, or pass --insecure for plain http")
    return registry.rstrip("/")


def push(
    models_dir: Path,
    name: str,
    registry: str = DEFAULT_REGISTRY,
    insecure: bool = False,
    key_path: Path = DEFAULT_KEY,
    chunk_size: int = CHUNK_SIZE,
    retries: int = 4,
    backoff: float = 1.0,
    transport: httpx.BaseTransport | None = None,
) -> dict:
    """Upload the blobs the registry lacks, then the manifest; the model counts as pushed only then.

    A re-run after an interruption uploads only what is still missing.
    ``transport`` lets tests put a faulty network between us and the registry.
    """
    namespace, model, tag = parse_model_name(name)
    raw, manifest = read_layout(models_dir, name)
    base = registry_url(registry, insecure)
    repo = f"{base}/v2/{namespace}/{model}"
    auth = OllamaAuth(key_path)
    summary: dict = {
        "name": f"{namespace}/{model}:{tag}",
        "registry": base,
        "uploaded": [],
        "skipped": [],
        "bytes_uploaded": 0,
        "bytes_skipped": 0,
    }
    with httpx.Client(transport=transport, timeout=httpx.Timeout(120.0, connect=15.0)) as client:
        for blob in [manifest["config"], *manifest["layers"]]:
            pushed = _push_blob(client, auth, repo, models_dir, blob, chunk_size, retries, backoff)
            outcome = "uploaded" if pushed else "skipped"
            summary[outcome].append(blob["digest"])
            summary[f"bytes_{outcome}"] += blob["size"]
        response = _retrying(
            f"manifest {summary['name']}",
            retries,
            backoff,
            functools.partial(
                _request,
                client,
                "PUT",
                f"{repo}/manifests/{tag}",
                content=raw,
                headers={"Content-Type": MANIFEST_MEDIA_TYPE},
                auth=auth,
            ),
        )
        _expect(response, f"manifest {summary['name']}", 200, 201)
    summary["manifest_digest"] = "sha256:" + hashlib.sha256(raw).hexdigest()
    return summary


def push_via_ollama(modelfile: Path, name: str, registry: str = DEFAULT_REGISTRY, insecure: bool = False) -> None:
    """``ollama create`` + ``ollama push`` with the local Ollama (its server must be running)."""
    parse_model_name(name)
    ollama = shutil.which("ollama")
    if ollama is None:
        raise MedllmError("--via-ollama needs the `ollama` binary on PATH (https://ollama.com/download)")
    if not Path(modelfile).is_file():
        raise MedllmError(f"no Modelfile at {modelfile} (run `medllm export` first)")
    host = httpx.URL(registry_url(registry, insecure)).netloc.decode()
    target = name if host == OLLAMA_REGISTRY_HOST else f"{host}/{name}"
    for args in (
        [ollama, "create", target, "-f", str(modelfile)],
        [ollama, "push", target, *(["--insecure"] if insecure else [])],
    ):
        code = subprocess.run(args).returncode
        if code != 0:
            raise MedllmError(f"`ollama {' '.join(args[1:])}` failed (exit code {code})")
