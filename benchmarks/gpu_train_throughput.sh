#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .whl/ (benchmarks/gpu_wheels.sh) and
# runs/bench/train_shapes/ (written by a CPU run of benchmarks/train_throughput.py) carried along:
#   bash benchmarks/gpu_train_throughput.sh
# Installs the wheels, then times the TinyLlama-1.1B and Llama-2-7B shapes (random weights, the dataset's
# length distribution): plain Transformers + PEFT against medllm's path, JSON under $OUT (or runs/bench).
# About 8 minutes on one H100; each shape is cut off by its own timeout so the other still reports.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-runs/bench}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 180 python3 benchmarks/train_throughput.py --shape tinyllama-1.1b --batch 32 --max-length 1024 \
  --steps 6 --warmup 2 --out "$OUT/train_throughput_tinyllama-1.1b.json"
timeout 300 python3 benchmarks/train_throughput.py --shape llama2-7b --batch 16 --max-length 1024 \
  --steps 6 --warmup 2 --paths baseline medllm --out "$OUT/train_throughput_llama2-7b.json"
