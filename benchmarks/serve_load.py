"""``/v1/diagnose`` throughput and latency at 1, 4 and 16 concurrent clients for each backend, against a
one-at-a-time server, in one run; then a 32-client load run against bounded servers.

Each server is a real uvicorn on 127.0.0.1 over the same base model (and the run's adapter, where it has one):

- ``one at a time``: transformers with ``serve.max_batch 1``, plain ``generate`` for one request after another
  (the baseline);
- ``transformers``: the in-process backend batching waiting requests (``serve.max_batch --max-batch``);
- ``llamacpp xN``: the run's exported GGUF (q8_0, else f16) with ``serve.n_parallel`` N contexts of
  ``--threads`` threads each, for each N of ``--parallel`` (1: llama.cpp one request at a time), when
  ``medllm export`` has written one.

For each client count the same ``--requests`` bodies (held-out cases of the run's test split, as the symptom
list) go from that many threads to each server in turn, round by round, so load on this shared machine hits
all alike. Reported per server and client count: requests/s, generated tokens/s, latency p50/p95, and
requests/s over the one-at-a-time server's at the same clients (median over ``--rounds``).

The load run sends ``--load-requests`` bodies from ``--load-clients`` threads to each server with
``serve.max_pending --load-pending``: every request must be answered with a differential (200) or refused
with 503 and ``Retry-After``; anything else counts as an error, and ``/healthz`` and a diagnosis after it
must succeed.

    nice -n 5 .venv/bin/python benchmarks/serve_load.py --output_dir RUN [--clients 1 4 16] [--requests 16]

Prints tables and writes ``<output_dir>/bench/serve_load.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import running  # noqa: E402  (a uvicorn on a free 127.0.0.1 port)
from medllm.config import DEFAULT_RECIPE, Config, load_config, parse_overrides  # noqa: E402
from medllm.data.dataset import load_index, load_split  # noqa: E402
from medllm.io import atomic_write_json  # noqa: E402
from medllm.markdown import table  # noqa: E402
from medllm.phenotype.rank import load_ranker  # noqa: E402
from medllm.retrieval import split_findings  # noqa: E402
from medllm.serve.app import create_app  # noqa: E402
from medllm.serve.backends import load_backend  # noqa: E402
from medllm.serve.schemas import PatientCase  # noqa: E402
from serve_latency import percentile  # noqa: E402


def with_serve(config: Config, **fields) -> Config:
    return config.model_copy(update={"serve": config.serve.model_copy(update=fields)})


def engines(config: Config, args) -> dict:
    """The servers' backends: one transformers model behind a one-at-a-time and a batching engine, and the
    exported GGUF in llama.cpp where the run has one."""
    batched = load_backend(with_serve(config, backend="transformers", max_batch=args.max_batch))
    found = {"one at a time": dataclasses.replace(batched, max_batch=1), "transformers": batched}
    if (config.run.export / "export.json").is_file():
        for parallel in args.parallel:
            llamacpp = with_serve(config, backend="llamacpp", n_parallel=parallel, n_threads=args.threads)
            found[f"llamacpp x{parallel}"] = load_backend(llamacpp)
    return found


def send(url: str, bodies: list[dict], clients: int) -> dict:
    """``bodies`` from ``clients`` threads: each answer's status, latency, tokens and Retry-After."""

    def one(body: dict) -> dict:
        started = time.perf_counter()
        response = httpx.post(f"{url}/v1/diagnose", json=body, timeout=600)
        answer = response.json() if response.status_code == 200 else {}
        return {
            "status": response.status_code,
            "seconds": time.perf_counter() - started,
            "tokens": answer.get("completion_tokens", 0),
            "answered": bool(answer.get("differential")),
            "retry_after": response.headers.get("retry-after"),
        }

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, bodies))
    return {"wall": time.perf_counter() - started, "results": results}


def throughput(run: dict) -> dict:
    ok = [r for r in run["results"] if r["status"] == 200]
    seconds = [r["seconds"] for r in ok]
    return {
        "ok": len(ok),
        "requests_per_s": len(ok) / run["wall"],
        "tokens_per_s": sum(r["tokens"] for r in ok) / run["wall"],
        "p50_s": statistics.median(seconds),
        "p95_s": percentile(seconds, 0.95),
    }


def load_run(url: str, bodies: list[dict], clients: int) -> dict:
    """The bounded server under ``clients`` at once: answered, refused (503 with Retry-After), or errors."""
    results = send(url, bodies, clients)["results"]
    after = httpx.post(f"{url}/v1/diagnose", json=bodies[0], timeout=600)
    return {
        "sent": len(results),
        "answered": sum(r["status"] == 200 and r["answered"] for r in results),
        "refused_503": sum(r["status"] == 503 and r["retry_after"] is not None for r in results),
        "errors": sum(not ((r["status"] == 200 and r["answered"]) or r["status"] == 503) for r in results),
        "statuses": sorted({r["status"] for r in results}),
        "healthy_after": httpx.get(f"{url}/healthz").is_success and after.status_code == 200,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2], help="llama.cpp contexts, per server")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per context")
    parser.add_argument("--load-clients", type=int, default=32)
    parser.add_argument("--load-requests", type=int, default=64)
    parser.add_argument("--load-pending", type=int, default=8)
    args, overrides = parser.parse_known_args()

    config = load_config(args.config, parse_overrides(overrides))
    cases = load_split(config.data_dir, "test").shuffle(seed=0)["vignette"]
    bodies = [PatientCase(symptoms=split_findings(v)[:40]).model_dump(exclude_none=True) for v in cases]
    index, cases_index = load_index(config)
    ranker = load_ranker(config.phenotype)  # one knowledge base for every server
    servers = engines(config, args)
    unbounded = with_serve(config, max_pending=max(args.clients) + 1)
    results = {name: {c: [] for c in args.clients} for name in servers}
    for _ in range(args.rounds):
        for clients in args.clients:
            for name, engine in servers.items():
                with running(create_app(engine, index, unbounded, cases_index, ranker)) as url:
                    httpx.post(f"{url}/v1/diagnose", json=bodies[0], timeout=600).raise_for_status()  # warm-up
                    results[name][clients].append(throughput(send(url, bodies[: args.requests], clients)))
    bounded = with_serve(config, max_pending=args.load_pending)
    load = {}
    for name, engine in servers.items():
        with running(create_app(engine, index, bounded, cases_index, ranker)) as url:
            load[name] = load_run(url, [bodies[i % len(bodies)] for i in range(args.load_requests)], args.load_clients)

    rows = []
    for clients in args.clients:
        baseline = results["one at a time"][clients]
        for name, by_clients in results.items():
            runs = by_clients[clients]
            ratio = statistics.median(r["requests_per_s"] / b["requests_per_s"] for r, b in zip(runs, baseline))
            median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            figures = [f"{median[k]:.2f}" for k in ("requests_per_s", "tokens_per_s", "p50_s", "p95_s")]
            rows.append([clients, name, *figures, f"{ratio:.2f}x"])
    print("\n".join(table(["clients", "server", "req/s", "tok/s", "p50 s", "p95 s", "req/s over one at a time"], rows)))
    print("\n" + json.dumps(load, indent=2))
    report = {
        "protocol": vars(args)
        | {
            "bodies": f"test split of {config.data_dir}, shuffled (seed 0), symptoms only",
            "model": config.model.name,
            "adapter": servers["transformers"].adapter,
            "gguf": next((e.name for n, e in servers.items() if n.startswith("llamacpp")), None),
            "max_new_tokens": config.serve.max_new_tokens,
        },
        "clients": results,
        "load": load,
    }
    atomic_write_json(config.output_dir / "bench" / "serve_load.json", report)
    print(f"\nwrote {config.output_dir / 'bench' / 'serve_load.json'}")


if __name__ == "__main__":
    main()
