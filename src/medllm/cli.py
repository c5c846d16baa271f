"""``medllm`` command line: one subcommand per pipeline stage.

    medllm data  [--config RECIPE] [--section.field VALUE ...]
    medllm index [--cases FILE] [overrides]        rebuild the retrieval index
    medllm train [--config RECIPE] [--resume | --overwrite] [overrides]
    medllm eval  [--config RECIPE] [--adapter DIR] [overrides]
    medllm serve [--config RECIPE] [--adapter DIR] [--backend ollama --ollama-url URL --ollama-model NAME]
                 [--backend openai --base-url URL [--model NAME]] [--backend llamacpp [--gguf FILE]]
    medllm ui    [--api-url URL] [--port N]                     the clinician UI
    medllm demo  [--config RECIPE] [overrides]     data → train → eval
    medllm export [--config RECIPE] [--adapter DIR | --base-model] [overrides]   GGUF + Ollama model
    medllm push  NAMESPACE/MODEL[:TAG] [--registry URL] [--insecure] [--via-ollama]

Every subcommand reads one YAML recipe (``--config``: a packaged recipe's
name or a file; default: the embedded SmolLM2 recipe) and takes any config
field as an override, e.g.
``--train.max_steps 20 --output_dir runs/try``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from medllm.config import (
    DEFAULT_API_URL,
    DEFAULT_RECIPE,
    DEFAULT_REGISTRY,
    DEFAULT_UI_PORT,
    Config,
    load_config,
    parse_overrides,
)
from medllm.errors import MedllmError


def run_data(config: Config) -> dict:
    """Simulate cases, split them, and save the dataset; print counts per split and source."""
    from medllm.data.build import build_dataset

    counts = build_dataset(config)
    print(f"dataset written to {config.data_dir}")
    for split, by_source in counts.items():
        detail = ", ".join(f"{s} {n}" for s, n in sorted(by_source.items()) if s != "total")
        print(f"  {split:<10} {by_source['total']:>6}  ({detail})")
    return counts


def run_index(config: Config) -> dict:
    """Rebuild the retrieval index of the saved dataset (disease profiles, and ``retrieval.case_corpus``)."""
    from medllm.data.build import build_index

    summary = build_index(config)
    print(
        f"index written to {config.data_dir / 'index'}: {summary['diseases']} diseases, "
        f"{summary['cases']} cases, retriever {summary['retriever']}"
    )
    return summary


def run_train(config: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """LoRA fine-tuning; checkpoints, logs and the adapter go to ``output_dir``."""
    from accelerate import PartialState

    from medllm.train.recipe import train

    summary = train(config, resume=resume, overwrite=overwrite)
    if PartialState().is_main_process:  # once under accelerate launch
        print(
            f"adapter written to {config.run.adapter} after {summary['global_step']} steps; "
            f"validation loss {summary['eval_loss']:.4f} (n={summary['eval_n']})"
        )
    return summary


def run_eval(config: Config, adapter: Path | None = None) -> dict:
    """Top-1/top-5 diagnosis accuracy of every condition on the held-out split."""
    from medllm.eval.run import evaluate

    metrics = evaluate(config, adapter=adapter)
    print(f"held-out {metrics['split']} cases: n={metrics['n']}")
    for name, result in metrics["conditions"].items():
        block = result["all"]
        print(f"  {name:<18} top-1 {block['top1']['accuracy']:6.1%}   top-5 {block['top5']['accuracy']:6.1%}")
    real = metrics.get("phenopackets")
    if real:
        print(f"real published cases ({real['source']['part']} part): n={real['n']}")
        for name, s in real["methods"].items():
            print(f"  {name:<50} top-1 {s['top1']:6.1%}   top-10 {s['top10']:6.1%}")
    print(f"report: {config.run.report}")
    return metrics


def run_serve(config: Config, adapter: Path | None = None) -> None:
    """The clinical decision-support API (FastAPI) on ``serve.host:serve.port``."""
    from medllm.serve.app import serve

    serve(config, adapter=adapter)


def run_ui(config: Config, api_url: str = DEFAULT_API_URL, port: int = DEFAULT_UI_PORT) -> None:
    """The clinician UI (Streamlit), calling the API at ``api_url``."""
    from medllm.serve.ui import launch

    launch(api_url, port=port, host=config.serve.host)


def run_demo(config: Config, overwrite: bool = True) -> dict:
    """The whole main job on one recipe: data → train → eval."""
    run_data(config)
    run_train(config, overwrite=overwrite)
    return run_eval(config)


def run_export(config: Config, adapter: Path | None = None, base_only: bool = False) -> dict:
    """Merge the adapter and write GGUF files, a Modelfile and an Ollama model to <output_dir>/export."""
    from medllm.export.recipe import export

    summary = export(config, adapter=adapter, base_only=base_only)
    out = config.run.export
    for entry in summary["gguf"].values():
        check = entry.get("check")
        detail = f"max abs logit difference {check['max_abs_logit_diff']:.2g}" if check else "not checked"
        print(f"  {out / entry['file']}  ({entry['size'] / 2**20:.0f} MiB, {detail})")
    print(
        f"Ollama: ollama create {config.export.ollama_model} -f {out / 'Modelfile'}  "
        f"(or OLLAMA_MODELS={out / 'ollama'} ollama serve)"
    )
    return summary


def run_push(
    config: Config,
    name: str,
    registry: str = DEFAULT_REGISTRY,
    insecure: bool = False,
    models_dir: Path | None = None,
    via_ollama: bool = False,
    modelfile: Path | None = None,
) -> dict | None:
    """Publish the exported Ollama model to a registry (default: the Ollama hub) as <namespace>/<model>[:tag]."""
    from medllm.export.push import push, push_via_ollama

    models_dir = models_dir or config.run.ollama_models
    if via_ollama:
        push_via_ollama(modelfile or models_dir.parent / "Modelfile", name, registry=registry, insecure=insecure)
        print(f"pushed {name} with ollama")
        return None
    summary = push(models_dir, name, registry=registry, insecure=insecure)
    print(
        f"pushed {summary['name']} to {summary['registry']} ({summary['manifest_digest']}): "
        f"{len(summary['uploaded'])} blobs uploaded ({summary['bytes_uploaded'] / 1e6:.1f} MB), "
        f"{len(summary['skipped'])} already there ({summary['bytes_skipped'] / 1e6:.1f} MB)"
    )
    return summary


def _option(*flags: str, **kwargs) -> tuple[tuple[str, ...], dict]:
    return flags, kwargs


CONFIG_OPTION = _option(
    "--config", default=DEFAULT_RECIPE, help="a packaged recipe's name or a YAML file (default: %(default)s)"
)
ADAPTER_OPTION = _option("--adapter", type=Path, help="LoRA adapter folder (default: <output_dir>/adapter)")
# The one table of subcommands: the function each runs and its own options (beside --config and overrides).
# An option whose dest is a dotted config field is a shorthand for that override.
COMMANDS: dict[str, tuple[Callable, list[tuple[tuple[str, ...], dict]]]] = {
    "data": (run_data, []),
    "index": (run_index, [_option("--cases", dest="retrieval.case_corpus", metavar="FILE")]),
    "train": (
        run_train,
        [
            _option("--resume", action="store_true", help="continue from the last complete checkpoint"),
            _option("--overwrite", action="store_true", help="replace a finished or unfinished run"),
        ],
    ),
    "eval": (run_eval, [ADAPTER_OPTION]),
    "serve": (
        run_serve,
        [
            ADAPTER_OPTION,
            _option("--backend", dest="serve.backend", choices=["transformers", "llamacpp", "ollama", "openai"]),
            _option("--gguf", dest="serve.gguf", metavar="FILE", help="llamacpp backend: the GGUF (default: export's)"),
            _option("--ollama-url", dest="serve.ollama_url", metavar="URL"),
            _option("--ollama-model", dest="serve.ollama_model", metavar="NAME"),
            _option("--base-url", dest="serve.openai_base_url", metavar="URL", help="openai backend: its /v1 root"),
            _option("--model", dest="serve.openai_model", metavar="NAME", help="openai backend: model name"),
        ],
    ),
    "ui": (
        run_ui,
        [
            _option("--api-url", default=DEFAULT_API_URL, help="the medllm API (default: %(default)s)"),
            _option("--port", type=int, default=DEFAULT_UI_PORT, help="UI port (default: %(default)s)"),
        ],
    ),
    "demo": (run_demo, []),
    "export": (
        run_export,
        [
            ADAPTER_OPTION,
            _option(
                "--base-model", dest="base_only", action="store_true", help="export the base model, without an adapter"
            ),
        ],
    ),
    "push": (
        run_push,
        [
            _option("name", help="<namespace>/<model>[:tag], e.g. alice/medllm:0.1"),
            _option("--registry", default=DEFAULT_REGISTRY, help="(default: %(default)s)"),
            _option("--insecure", action="store_true", help="allow a plain-http registry"),
            _option(
                "--models-dir",
                type=Path,
                help="Ollama models folder from `medllm export` (default: <output_dir>/export/ollama)",
            ),
            _option(
                "--via-ollama", action="store_true", help="run `ollama create` + `ollama push` with the local ollama"
            ),
            _option("--modelfile", type=Path, help="for --via-ollama (default: the Modelfile beside <models-dir>)"),
        ],
    ),
}
EXCLUSIVE = {"train": ("resume", "overwrite")}  # options of a command that exclude each other


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medllm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, options) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=func.__doc__.splitlines()[0],
            description=func.__doc__,
            epilog="Any config field can be overridden: --section.field VALUE",
        )
        cmd.add_argument(*CONFIG_OPTION[0], **CONFIG_OPTION[1])
        exclusive = cmd.add_mutually_exclusive_group() if name in EXCLUSIVE else None
        for flags, kwargs in options:
            target = exclusive if exclusive and flags[0].lstrip("-") in EXCLUSIVE[name] else cmd
            if "." in kwargs.get("dest", ""):
                kwargs = {"help": f"same as --{kwargs['dest']}", **kwargs}
            target.add_argument(*flags, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown progress bars
    args, extra = build_parser().parse_known_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        overrides = parse_overrides(extra)
        for field in [k for k in options if "." in k]:
            if (value := options.pop(field)) is not None:
                overrides[field] = str(value)
        config = load_config(args.config, overrides)
        COMMANDS[args.command][0](config, **options)
    except MedllmError as exc:
        print(f"medllm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
