"""Ollama's model store (``OLLAMA_MODELS``): model names, blobs named by sha256, docker v2 manifests.

``medllm export`` writes it; ``medllm push`` reads it and uploads it as is.
A user with Ollama can point ``OLLAMA_MODELS`` at it or copy it into theirs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from medllm.config import OLLAMA_REGISTRY_HOST
from medllm.errors import MedllmError

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.ollama.image.{}"
NAME_PART = r"[a-z0-9][a-z0-9._-]*"
MODEL_NAME = re.compile(rf"(?P<namespace>{NAME_PART})/(?P<model>{NAME_PART})(?::(?P<tag>{NAME_PART}))?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def parse_model_name(name: str) -> tuple[str, str, str]:
    """``namespace/model[:tag]`` → (namespace, model, tag); the tag defaults to ``latest``.

    The parts become file and registry paths, so nothing else is accepted.
    """
    match = MODEL_NAME.fullmatch(name)
    if match is None:
        raise MedllmError(
            f"invalid model name {name!r}: Ollama model names look like namespace/model[:tag], "
            "each part lowercase letters, digits and . _ - (starting with a letter or digit)"
        )
    return match["namespace"], match["model"], match["tag"] or "latest"


def manifest_path(models_dir: Path, name: str) -> Path:
    namespace, model, tag = parse_model_name(name)
    return Path(models_dir) / "manifests" / OLLAMA_REGISTRY_HOST / namespace / model / tag


def blob_path(models_dir: Path, digest: str) -> Path:
    return Path(models_dir) / "blobs" / digest.replace(":", "-")


def _store_blob(models_dir: Path, media_type: str, data: bytes | None = None, source: Path | None = None) -> dict:
    """Store one blob as ``sha256-<hex>`` (a GGUF is hard-linked, not copied); return its descriptor."""
    if source is not None:
        with open(source, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        size = source.stat().st_size
    else:
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
    target = blob_path(models_dir, f"sha256:{digest}")
    if not target.exists():  # identical layers share a blob
        if source is not None:
            os.link(source, target)
        else:
            target.write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": size}


def write_ollama_layout(
    models_dir: Path, name: str, gguf_path: Path, layers: dict[str, bytes], config_fields: dict
) -> Path:
    """The model's blobs (GGUF, then ``layers`` by kind), its config blob and its manifest."""
    path = manifest_path(models_dir, name)
    (Path(models_dir) / "blobs").mkdir(parents=True, exist_ok=True)
    descriptors = [_store_blob(models_dir, LAYER_MEDIA_TYPE.format("model"), source=gguf_path)]
    descriptors += [_store_blob(models_dir, LAYER_MEDIA_TYPE.format(kind), data=data) for kind, data in layers.items()]
    config = {
        **config_fields,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
    }
    config_blob = json.dumps(config, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": _store_blob(models_dir, CONFIG_MEDIA_TYPE, data=config_blob),
        "layers": descriptors,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, separators=(",", ":")))
    return path


def read_layout(models_dir: Path, name: str) -> tuple[bytes, dict]:
    """The manifest of ``name``: its exact bytes (what gets pushed) and its parsed, checked content."""
    path = manifest_path(models_dir, name)
    if not path.is_file():
        raise MedllmError(f"no Ollama model {name} in {models_dir} ({path} missing): run `medllm export` first")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
        valid = (
            manifest["schemaVersion"] == 2
            and manifest["mediaType"] == MANIFEST_MEDIA_TYPE
            and all(
                isinstance(b["mediaType"], str) and isinstance(b["size"], int) and DIGEST.fullmatch(b["digest"])
                for b in [manifest["config"], *manifest["layers"]]
            )
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise MedllmError(
            f"{path}: not a docker v2 manifest whose config and layers have mediaType, sha256 digest and size"
        )
    return raw, manifest
