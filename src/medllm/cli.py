"""``medllm`` command line: one subcommand per pipeline stage.

    medllm data  [--config FILE] [--section.field VALUE ...]
    medllm train [--config FILE] [--resume | --overwrite] [overrides]
    medllm eval  [--config FILE] [--adapter DIR] [overrides]
    medllm serve [--config FILE] [--adapter DIR] [overrides]   the API
    medllm ui    [--api-url URL] [--port N]                     the clinician UI
    medllm demo  [--config FILE] [overrides]     data → train → eval

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


def run_data(config: Config) -> dict:
    """Simulate cases, split them, and save the dataset; print counts per split and source."""
    from medllm.data import build_dataset

    counts = build_dataset(config)
    print(f"dataset written to {config.data_dir}")
    for split, by_source in counts.items():
        detail = ", ".join(f"{s} {n}" for s, n in sorted(by_source.items()) if s != "total")
        print(f"  {split:<10} {by_source['total']:>6}  ({detail})")
    return counts


def run_train(config: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """LoRA fine-tuning; checkpoints, logs and the adapter go to ``output_dir``."""
    from medllm.train import train

    summary = train(config, resume=resume, overwrite=overwrite)
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
    for name, func in (("data", run_data), ("train", run_train), ("eval", run_eval), ("serve", run_serve),
                       ("ui", run_ui), ("demo", run_demo)):
        cmd = sub.add_parser(name, help=func.__doc__.splitlines()[0],
                             epilog="Any config field can be overridden: --section.field VALUE")
        cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None,
                         help="YAML recipe (default: %(default)s)")
        if name == "train":
            group = cmd.add_mutually_exclusive_group()
            group.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
            group.add_argument("--overwrite", action="store_true", help="replace a finished or unfinished run")
        if name in ("eval", "serve"):
            cmd.add_argument("--adapter", type=Path, help="LoRA adapter folder (default: <output_dir>/adapter)")
        if name == "ui":
            cmd.add_argument("--api-url", default="http://127.0.0.1:8000", help="the medllm API (default: %(default)s)")
            cmd.add_argument("--port", type=int, default=8501, help="UI port (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args, extra = build_parser().parse_known_args(argv)
    try:
        config = load_config(args.config, parse_overrides(extra))
        if args.command == "data":
            run_data(config)
        elif args.command == "train":
            run_train(config, resume=args.resume, overwrite=args.overwrite)
        elif args.command == "eval":
            run_eval(config, adapter=args.adapter)
        elif args.command == "serve":
            run_serve(config, adapter=args.adapter)
        elif args.command == "ui":
            run_ui(config, api_url=args.api_url, port=args.port)
        else:
            run_demo(config)
    except MedllmError as exc:
        print(f"medllm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
