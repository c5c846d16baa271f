"""The run folder: one place that knows where each stage reads and writes.

Layout of ``<output_dir>``::

    config.yaml            resolved configuration of the last training run
    data/                  ``medllm data`` (unless ``data.dir`` points elsewhere)
    checkpoints/           checkpoint-N (adapter, optimizer, RNG, trainer state)
    logs/                  TensorBoard events and metrics.csv
    adapter/               final LoRA adapter + tokenizer
    train_summary.json     written last by ``medllm train``: the run is finished
    eval/                  ``medllm eval``: metrics.json, report.md, predictions
    rerank.json            ``medllm eval``: the re-ranker's fitted fusion weight and temperature
    export/                ``medllm export``: merged/, GGUF files, Modelfile, ollama/
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from medllm.errors import MedllmError

ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def is_adapter(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT adapter (its ``adapter_config.json``)."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def require_adapter(folder: Path, hint: str = "") -> Path:
    """``folder`` if it holds an adapter, else a one-line error naming it."""
    if not is_adapter(folder):
        raise MedllmError(f"no LoRA adapter at {folder} ({ADAPTER_CONFIG} missing){hint}")
    return Path(folder)


@dataclass(frozen=True)
class RunDir:
    """Typed paths of one run folder (see the module docstring for the layout)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def metrics_csv(self) -> Path:
        return self.logs / "metrics.csv"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def adapter_staging(self) -> Path:
        return self.root / ".adapter.staging"

    @property
    def rerank(self) -> Path:
        """The re-ranker's fusion weights and temperatures fitted by ``medllm eval``."""
        return self.root / "rerank.json"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def report(self) -> Path:
        return self.eval / "report.md"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def ollama_models(self) -> Path:
        return self.export / "ollama"

    @property
    def modelfile(self) -> Path:
        return self.export / "Modelfile"

    def adapter_or_default(self, adapter: Path | None) -> Path:
        """An ``--adapter`` the user gave, else this run's ``adapter/``."""
        return Path(adapter) if adapter else self.adapter

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints whose trainer state was written (it is saved last), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir() if CHECKPOINT.fullmatch(p.name) and p.is_dir()]
        return sorted(
            (p for p in found if (p / "trainer_state.json").is_file()),
            key=lambda p: int(CHECKPOINT.fullmatch(p.name).group(1)),
        )

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.complete_checkpoints()
        return found[-1] if found else None

    def clear_training(self) -> None:
        """Remove what a training run writes (and the evaluation of it): ``--overwrite``."""
        for folder in (self.checkpoints, self.logs, self.adapter, self.eval):
            shutil.rmtree(folder, ignore_errors=True)
        self.train_summary.unlink(missing_ok=True)
