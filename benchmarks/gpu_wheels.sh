#!/usr/bin/env bash
# Here (a machine with PyPI): download the wheels the GPU machine lacks for benchmarks/train_throughput.py
# into .whl/ (git-ignored through .git/info/exclude), for Python 3.12 on x86-64, at this venv's versions.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
PY=${PY:-.venv/bin/python}
pins=$($PY -m pip list --format=freeze 2>/dev/null | grep -i -E '^(trl|datasets|dill|multiprocess|xxhash|peft|transformers|pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]inspection)==')
$PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $pins
du -sh .whl
