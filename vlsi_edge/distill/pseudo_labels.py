"""The teacher's greedy answers for unlabelled items: what steps 1-2 train on instead of ground truth.

Answers are computed on first use, one batch at a time, and kept in a JSON file keyed by the teacher
and the data (`runs/cache/pseudo-labels/<key>.json`), so every run and seed of the same teacher shares
them and a resumed or repeated run never regenerates one. An offline teacher cache carries its own
copy (`DIR/pseudo_labels.json`), so a run without the teacher still knows which answers it trains on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from vlsi_edge import atomic
from vlsi_edge.data import VQASample
from vlsi_edge.evaluate import generate_answers

log = logging.getLogger(__name__)


class PseudoLabels:
    """uid -> the teacher's answer; `relabel(samples)` swaps the samples' answers for the teacher's."""

    def __init__(self, path: Path | None, teacher=None, family=None, processor=None):
        self.path, self.teacher, self.family, self.processor = path, teacher, family, processor
        self.answers: dict[str, str] = {}
        self._dirty = False
        if path is not None and path.is_file():
            try:
                self.answers = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not a pseudo-label file ({e}); delete it to regenerate") from None

    def relabel(self, samples: list[VQASample]) -> list[VQASample]:
        missing = [s for s in samples if s.uid not in self.answers]
        if missing:
            if self.teacher is None:
                raise FileNotFoundError(
                    f"{self.path}: no teacher answer for {missing[0].uid!r} (the teacher cache was written for other data)"
                )
            for sample, answer in zip(missing, generate_answers(self.teacher, self.family, self.processor, missing)):
                self.answers[sample.uid] = answer
            self._dirty = True
        return [dataclasses.replace(s, answer=self.answers[s.uid]) for s in samples]

    def save(self) -> None:
        """Write the answers made since the last save (atomically: a reader sees the old file or the new)."""
        if self.path is not None and self._dirty:
            atomic.write_json(self.path, self.answers)
            self._dirty = False
