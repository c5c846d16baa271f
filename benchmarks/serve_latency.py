"""``/v1/diagnose`` latency and tokens/s against plain ``transformers`` ``generate``, in one run.

For each held-out case (the recipe's test split) the baseline is the bare
model call: the same retrieved-candidate prompt, chat template, greedy
``generate`` with the serving token cap. With ``--serve.backend llamacpp`` the
served backend's own bare generation on the same prompts is timed beside it
(the tokens/s ratio to transformers). The served side is a real uvicorn on
127.0.0.1 answering ``POST /v1/diagnose`` over HTTP (validation, red-flag
rules, retrieval, generation, answer matching, evidence). The two alternate
case by case, so machine noise hits both alike (concurrent clients and load:
``benchmarks/serve_load.py``).

    python benchmarks/serve_latency.py [--config FILE] [--cases 20] [--section.field VALUE ...]

e.g. on the demo run: ``--output_dir runs/demo [--serve.backend llamacpp]``.

Prints a table and writes ``<output_dir>/bench/serve_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import running  # noqa: E402  (a uvicorn on a free 127.0.0.1 port)
from medllm.config import (  # noqa: E402
    DEFAULT_RECIPE,
    load_config,
    parse_overrides,
)
from medllm.data.dataset import load_index, load_split  # noqa: E402
from medllm.io import atomic_write_json  # noqa: E402
from medllm.prompts import build_messages, describe_candidate  # noqa: E402
from medllm.retrieval import split_findings  # noqa: E402
from medllm.serve.app import create_app  # noqa: E402
from medllm.serve.backends import load_backend  # noqa: E402
from medllm.serve.schemas import PatientCase  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], tokens: list[int]) -> dict:
    return {
        "n": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "tokens_per_s_median": round(statistics.median(t / s for t, s in zip(tokens, latencies)), 1),
    }


def transformers_config(config):
    """``config`` serving the in-process transformers model instead (the same base and run adapter)."""
    return config.model_copy(update={"serve": config.serve.model_copy(update={"backend": "transformers"})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--cases", type=int, default=20)
    args, overrides = parser.parse_known_args()

    config = load_config(args.config, parse_overrides(overrides))
    rows = load_split(config.data_dir, "test").shuffle(seed=0).select(range(args.cases))
    engine = load_backend(config)
    # the plain baseline: transformers generate, in-process, whatever backend is served
    plain_engine = engine if config.serve.backend == "transformers" else load_backend(transformers_config(config))
    index, cases_index = load_index(config)
    app = create_app(engine, index, config, cases_index)
    bodies = [PatientCase(symptoms=split_findings(v)[:40]).model_dump(exclude_none=True) for v in rows["vignette"]]

    def bare(model, body: dict) -> tuple[float, int]:
        """The retrieved-candidate prompt, timed from chat template to decoded answer."""
        vignette = PatientCase(**body).vignette()
        hits = index.search(vignette, config.prompt.num_candidates)
        messages = build_messages(vignette, [describe_candidate(d) for d, _ in hits], config.prompt.differential_size)
        started = time.perf_counter()
        _, n_tokens = model.complete(messages)
        return time.perf_counter() - started, n_tokens

    plain = {"latency": [], "tokens": []}
    backend = {"latency": [], "tokens": []}  # the served backend's bare generation, when not transformers
    served = {"latency": [], "tokens": []}
    with running(app) as url, httpx.Client(base_url=url, timeout=600) as client:
        client.post("/v1/diagnose", json=bodies[0]).raise_for_status()  # warm-up
        for body in bodies:
            seconds, n_tokens = bare(plain_engine, body)
            plain["latency"].append(seconds), plain["tokens"].append(n_tokens)
            if plain_engine is not engine:
                seconds, n_tokens = bare(engine, body)
                backend["latency"].append(seconds), backend["tokens"].append(n_tokens)
            started = time.perf_counter()
            response = client.post("/v1/diagnose", json=body)
            response.raise_for_status()
            served["latency"].append(time.perf_counter() - started)
            served["tokens"].append(response.json()["completion_tokens"])

    report = {
        "protocol": f"{args.cases} test-split cases of {config.data_dir}, alternating baseline and served; "
        f"greedy, max_new_tokens {config.serve.max_new_tokens}; backend {config.serve.backend}, model "
        f"{engine.name}, adapter {engine.adapter}; baseline transformers {plain_engine.name}, adapter "
        f"{plain_engine.adapter}; torch threads {torch.get_num_threads()}",
        "baseline_generate": summary(plain["latency"], plain["tokens"]),
        **(
            {f"{config.serve.backend}_generate": summary(backend["latency"], backend["tokens"])}
            if backend["tokens"]
            else {}
        ),
        "served_diagnose": summary(served["latency"], served["tokens"]),
        "served_over_baseline_p50": round(
            statistics.median(served["latency"]) / statistics.median(plain["latency"]), 3
        ),
    }
    atomic_write_json(config.output_dir / "bench" / "serve_latency.json", report)
    print(json.dumps(report, indent=2))
    print("\n| path | n | p50 s | p95 s | tokens/s (median) |\n| --- | --- | --- | --- | --- |")
    for name in (n for n in report if n.endswith(("_generate", "_diagnose"))):
        r = report[name]
        print(f"| {name} | {r['n']} | {r['p50_s']} | {r['p95_s']} | {r['tokens_per_s_median']} |")
    print(f"\nserved / baseline p50: {report['served_over_baseline_p50']}x")
    if backend["tokens"]:
        ratio = report[f"{config.serve.backend}_generate"]["tokens_per_s_median"]
        ratio /= report["baseline_generate"]["tokens_per_s_median"]
        print(f"{config.serve.backend} / transformers generation tokens/s (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
