"""``medllm`` command line: one subcommand per pipeline stage.

    medllm data  [--config FILE] [--section.field VALUE ...]
    medllm index [--cases FILE] [overrides]        rebuild the retrieval index
    medllm train [--config FILE] [--resume | --overwrite] [overrides]
    medllm eval  [--config FILE] [--adapter DIR] [overrides]
    medllm serve [--config FILE] [--adapter DIR] [--backend ollama --ollama-url URL --ollama-model NAME]
    medllm ui    [--api-url URL] [--port N]                     the clinician UI
    medllm demo  [--config FILE] [overrides]     data → train → eval
    medllm export [--config FILE] [--adapter DIR | --base-model] [overrides]   GGUF + Ollama model
    medllm push  NAMESPACE/MODEL[:TAG] [--registry URL] [--insecure] [--via-ollama]

Every subcommand reads one YAML recipe (default: the embedded SmolLM2
recipe) and takes any config field as an override, e.g.
``--train.max_steps 20 --output_dir runs/try``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from medllm.config import Config, load_config
from medllm.errors import MedllmError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "smollm2-135m-lora.yaml"
# command-line options that are shorthands for config fields
OPTION_ALIASES = {"cases": "data.case_corpus", "backend": "serve.backend", "ollama_url": "serve.ollama_url",
                  "ollama_model": "serve.ollama_model"}


def run_data(config: Config) -> dict:
    """Simulate cases, split them, and save the dataset; print counts per split and source."""
    from medllm.data import build_dataset

    counts = build_dataset(config)
    print(f"dataset written to {config.data_dir}")
    for split, by_source in counts.items():
        detail = ", ".join(f"{s} {n}" for s, n in sorted(by_source.items()) if s != "total")
        print(f"  {split:<10} {by_source['total']:>6}  ({detail})")
    return counts


def run_index(config: Config) -> dict:
    """Rebuild the retrieval index of the saved dataset (disease profiles, and ``data.case_corpus``)."""
    from medllm.data import build_index

    summary = build_index(config)
    print(f"index written to {config.data_dir / 'index'}: {summary['diseases']} diseases, "
          f"{summary['cases']} cases, retriever {summary['retriever']}")
    return summary


def run_train(config: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """LoRA fine-tuning; checkpoints, logs and the adapter go to ``output_dir``."""
    from accelerate import PartialState

    from medllm.train import train

    summary = train(config, resume=resume, overwrite=overwrite)
    if PartialState().is_main_process:  # once under accelerate launch
        print(f"adapter written to {config.output_dir / 'adapter'} after {summary['global_step']} steps; "
              f"validation loss {summary['eval_loss']:.4f} (n={summary['eval_n']})")
    return summary


def run_eval(config: Config, adapter: Path | None = None) -> dict:
    """Top-1/top-5 diagnosis accuracy of every condition on the held-out split."""
    from medllm.evaluate import evaluate

    metrics = evaluate(config, adapter=adapter)
    print(f"held-out {metrics['split']} cases: n={metrics['n']}")
    for name, result in metrics["conditions"].items():
        block = result["all"]
        print(f"  {name:<18} top-1 {block['top1']['accuracy']:6.1%}   top-5 {block['top5']['accuracy']:6.1%}")
    print(f"report: {config.output_dir / 'eval' / 'report.md'}")
    return metrics


def run_serve(config: Config, adapter: Path | None = None) -> None:
    """The clinical decision-support API (FastAPI) on ``serve.host:serve.port``."""
    from medllm.serve import serve

    serve(config, adapter=adapter)


def run_ui(config: Config, api_url: str = "http://127.0.0.1:8000", port: int = 8501) -> None:
    """The clinician UI (Streamlit), calling the API at ``api_url``."""
    from medllm.ui import launch

    launch(api_url, port=port, host=config.serve.host)


def run_demo(config: Config, overwrite: bool = True) -> dict:
    """The whole main job on one recipe: data → train → eval."""
    run_data(config)
    run_train(config, overwrite=overwrite)
    return run_eval(config)


def run_export(config: Config, adapter: Path | None = None, base_only: bool = False) -> dict:
    """Merge the adapter and write GGUF files, a Modelfile and an Ollama model to <output_dir>/export."""
    from medllm.export import export

    summary = export(config, adapter=adapter, base_only=base_only)
    out = config.output_dir / "export"
    for type_name, entry in summary["gguf"].items():
        check = entry.get("check")
        detail = f"max abs logit difference {check['max_abs_logit_diff']:.2g}" if check else "not checked"
        print(f"  {out / entry['file']}  ({entry['size'] / 2**20:.0f} MiB, {detail})")
    print(f"Ollama: ollama create {config.export.ollama_model} -f {out / 'Modelfile'}  "
          f"(or OLLAMA_MODELS={out / 'ollama'} ollama serve)")
    return summary


def run_push(config: Config, name: str, registry: str = "https://registry.ollama.ai", insecure: bool = False,
             models_dir: Path | None = None, via_ollama: bool = False, modelfile: Path | None = None) -> dict | None:
    """Publish the exported Ollama model to a registry (default: the Ollama hub) as <namespace>/<model>[:tag]."""
    from medllm.push import push, push_via_ollama

    models_dir = models_dir or config.output_dir / "export" / "ollama"
    if via_ollama:
        push_via_ollama(modelfile or models_dir.parent / "Modelfile", name, registry=registry, insecure=insecure)
        print(f"pushed {name} with ollama")
        return None
    summary = push(models_dir, name, registry=registry, insecure=insecure)
    print(f"pushed {summary['name']} to {summary['registry']} ({summary['manifest_digest']}): "
          f"{len(summary['uploaded'])} blobs uploaded ({summary['bytes_uploaded'] / 1e6:.1f} MB), "
          f"{len(summary['skipped'])} already there ({summary['bytes_skipped'] / 1e6:.1f} MB)")
    return summary


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """``--a.b value`` / ``--a.b=value`` pairs → {"a.b": "value"}."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise MedllmError(f"unexpected argument {token!r} (overrides look like --train.max_steps 10)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(tokens):
                raise MedllmError(f"override --{key} needs a value")
            value, i = tokens[i + 1], i + 1
        overrides[key] = value
        i += 1
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medllm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("data", run_data), ("index", run_index), ("train", run_train), ("eval", run_eval),
                       ("serve", run_serve), ("ui", run_ui), ("demo", run_demo), ("export", run_export),
                       ("push", run_push)):
        cmd = sub.add_parser(name, help=func.__doc__.splitlines()[0],
                             epilog="Any config field can be overridden: --section.field VALUE")
        cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None,
                         help="YAML recipe (default: %(default)s)")
        if name == "train":
            group = cmd.add_mutually_exclusive_group()
            group.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
            group.add_argument("--overwrite", action="store_true", help="replace a finished or unfinished run")
        if name in ("eval", "serve", "export"):
            cmd.add_argument("--adapter", type=Path, help="LoRA adapter folder (default: <output_dir>/adapter)")
        if name == "export":
            cmd.add_argument("--base-model", action="store_true", help="export the base model, without an adapter")
        if name == "index":
            cmd.add_argument("--cases", type=Path, help="case corpus to index (same as --data.case_corpus)")
        if name == "serve":
            cmd.add_argument("--backend", choices=["transformers", "ollama"], help="same as --serve.backend")
            cmd.add_argument("--ollama-url", help="same as --serve.ollama_url")
            cmd.add_argument("--ollama-model", help="same as --serve.ollama_model")
        if name == "ui":
            cmd.add_argument("--api-url", default="http://127.0.0.1:8000", help="the medllm API (default: %(default)s)")
            cmd.add_argument("--port", type=int, default=8501, help="UI port (default: %(default)s)")
        if name == "push":
            cmd.add_argument("name", help="<namespace>/<model>[:tag], e.g. alice/medllm:0.1")
            cmd.add_argument("--registry", default="https://registry.ollama.ai", help="(default: %(default)s)")
            cmd.add_argument("--insecure", action="store_true", help="allow a plain-http registry")
            cmd.add_argument("--models-dir", type=Path,
                             help="Ollama models folder from `medllm export` (default: <output_dir>/export/ollama)")
            cmd.add_argument("--via-ollama", action="store_true",
                             help="run `ollama create` + `ollama push` with the local ollama instead")
            cmd.add_argument("--modelfile", type=Path,
                             help="for --via-ollama (default: the Modelfile beside <models-dir>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown progress bars
    args, extra = build_parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(extra)
        for option, key in OPTION_ALIASES.items():
            if getattr(args, option, None) is not None:
                overrides[key] = str(getattr(args, option))
        config = load_config(args.config, overrides)
        if args.command == "data":
            run_data(config)
        elif args.command == "index":
            run_index(config)
        elif args.command == "train":
            run_train(config, resume=args.resume, overwrite=args.overwrite)
        elif args.command == "eval":
            run_eval(config, adapter=args.adapter)
        elif args.command == "serve":
            run_serve(config, adapter=args.adapter)
        elif args.command == "ui":
            run_ui(config, api_url=args.api_url, port=args.port)
        elif args.command == "export":
            run_export(config, adapter=args.adapter, base_only=args.base_model)
        elif args.command == "push":
            run_push(config, args.name, registry=args.registry, insecure=args.insecure, models_dir=args.models_dir,
                     via_ollama=args.via_ollama, modelfile=args.modelfile)
        else:
            run_demo(config)
    except MedllmError as exc:
        print(f"medllm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
