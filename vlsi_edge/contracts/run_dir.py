"""The run directory: the contract between training and export (docs/DESIGN.md).

    runs/<name>/config.yaml        resolved config (a resumed run must match it)
    runs/<name>/student/           the distilled student: HF save_pretrained + processor
    runs/<name>/verbalizers/       {student,teacher}/verbalizers.safetensors + .json
    runs/<name>/checkpoints/last/  resumable state (models, optimizer, scheduler, RNG, data position)
    runs/<name>/metrics.jsonl      one JSON object per logged step
    runs/<name>/report.{json,md}, *.png
    runs/latest -> <name>

Every file is written atomically; a checkpoint directory is staged and swapped in whole.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path

import yaml

from vlsi_edge import atomic
from vlsi_edge.config import ConfigError, dump_yaml, from_dict, read_yaml


class StageName(StrEnum):
    """The training stages, as run directories name them (metrics.jsonl "stage", progress.json and
    report.json "stages"). A StrEnum: each member equals its string, so files stay plain JSON."""

    VERBALIZE_TEACHER = "verbalize_teacher"  # VLsI step 1, teacher side
    VERBALIZE_STUDENT = "verbalize_student"  # VLsI step 1, student side
    INTERACT = "interact"  # VLsI step 2
    FINAL_KD = "final_kd"  # baseline: final-layer KD in step 2's place
    HIDDEN_L2 = "hidden_l2"  # baseline: hidden-state L2 in step 2's place
    SFT = "sft"  # step 3 (or the SFT-only baseline)


SECOND_STAGES = (StageName.INTERACT, StageName.FINAL_KD, StageName.HIDDEN_L2)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | Path, name: str, config) -> "RunDir":
        """A new run directory with the resolved config; refuses to reuse an existing one."""
        root = Path(root)
        if not name or name in (".", "..") or "/" in name or "\\" in name or name == "latest" or name.startswith("."):
            raise ConfigError(f"run name {name!r}: use a plain folder name (no '/', not '.', '..', 'latest' or hidden)")
        run = cls(root / name)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"runs directory {root}: exists and is not a directory")
        if run.path.exists():
            raise FileExistsError(f"{run.path} already exists; pick another --name or continue it with --resume")
        try:
            run.path.mkdir(parents=True)
        except OSError as e:
            raise ConfigError(f"runs directory {root}: cannot create {run.path} ({e.strerror})") from None
        atomic.write_text(run.config_path, dump_yaml(config))
        return run  # runs/latest moves only once the run has started (`point_latest`, called by the trainer)

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether `path` is a training run (its config and anything a run writes beside it)."""
        return (path / "config.yaml").is_file() and any((path / p).exists() for p in ("checkpoints", "student"))

    def discard_if_unstarted(self) -> bool:
        """Remove this run directory if it holds nothing but its config (a run that failed before starting)."""
        if self.path.is_dir() and [p.name for p in self.path.iterdir()] == [self.config_path.name]:
            self.config_path.unlink()
            self.path.rmdir()
            return True
        return False

    @classmethod
    def resume(cls, path: str | Path, config) -> "RunDir":
        """An existing run, after checking that `config` is the one it was started with."""
        run = cls(Path(path).resolve())
        if not run.config_path.is_file():
            raise FileNotFoundError(f"{run.path}: not a run directory (no config.yaml)")
        saved = yaml.safe_load(run.config_path.read_text())
        now = yaml.safe_load(dump_yaml(config))
        diffs = sorted(_diff(saved, now))
        if diffs:
            shown = "; ".join(f"{k}: run has {a!r}, now {b!r}" for k, a, b in diffs[:6])
            raise ConfigError(f"cannot resume {run.path} with a different config ({shown}); start a new run instead")
        return run

    @classmethod
    def finished(cls, path: str | Path) -> "RunDir":
        """A run whose student is saved (what export reads); a clear error for anything else."""
        run = cls(Path(path).resolve())
        if not (run.student_path / "config.json").is_file():
            raise FileNotFoundError(f"{run.path}: no student/ model in this run directory (has the run finished?)")
        return run

    def load_config(self):
        """The run's resolved `RunConfig`."""
        from vlsi_edge.recipes import RunConfig

        data = read_yaml(self.config_path)
        if isinstance(data, dict):
            data.pop("batch_size", None)  # written (unused) by runs before the key was removed; train.batch_size is the one
        return from_dict(RunConfig, data, str(self.config_path))

    @property
    def student_path(self) -> Path:
        return self.path / "student"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def point_latest(self) -> None:
        """Atomically repoint <root>/latest at this run (relative link, so the tree can move)."""
        link = self.path.parent / "latest"
        tmp = self.path.parent / f".latest.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.path.name)
        os.replace(tmp, link)

    def log_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, keep) -> None:
        """Keep only metric lines for which keep(record) is true (on resume: drop steps to be redone)."""
        if not self.metrics_path.is_file():
            return
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if keep(json.loads(line))]
        atomic.write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]


def _diff(a, b, prefix: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b


def teacher_score(run: Path) -> dict | None:
    """The teacher's ShapesVQA test accuracy as the run measured it (report.json), or None."""
    try:
        report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        test = report["accuracy"]["teacher"]["test"]
        return {"model": report.get("teacher"), "accuracy": round(test["accuracy"], 4), "items": test["total"],
                "per_family": {f: round(v["accuracy"], 4) for f, v in test.get("per_family", {}).items()}}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a run on other data, or an older report: the chain starts at the student
