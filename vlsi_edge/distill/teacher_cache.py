"""Offline teacher cache: the teacher's verbalized top-k distributions for every step-2 batch, on disk.

    python -m vlsi_edge.train --cache-teacher DIR [--recipe R] [--set ...]     # teacher resident
    python -m vlsi_edge.train --set distill.teacher_cache=DIR [--recipe R]     # teacher never loaded

The cache command trains (or loads) the teacher verbalizers, then walks exactly the micro-batches step 2
will see (same data stream, batch size, accumulation and ranks) and stores, at the answer positions,
the top-k log-probabilities and token ids of every teacher target layer and of the final logits:

    DIR/meta.json                      teacher, target layers, k, data/batch fingerprint, teacher accuracy
    DIR/tokenizer/                     the teacher's tokenizer (for the vocabulary check)
    DIR/shards/s{step}_m{micro}_r{rank}.safetensors   logprobs [T+1, N, k] fp16, ids [T+1, N, k] int32, targets [N]
    DIR/pseudo_labels.r{rank}.json     the teacher's answers the batches were built on (data.distill_answers=teacher)

The KL against a cached teacher is taken on its top-k support, renormalised (as DistillKit does):
    KL(p_t || p_s) ~= sum_{j in top-k} p^_t(j) (log p^_t(j) - log p_s(j)),  p^_t = p_t / sum_{top-k} p_t
Only the forward direction can be computed from a top-k cache; the matching is restricted to the
cached teacher targets.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from tqdm import tqdm

from vlsi_edge import atomic
from vlsi_edge.config import ConfigError
from vlsi_edge.distill.losses import TopK

log = logging.getLogger(__name__)


def pseudo_label_file(rank: int) -> str:
    """The teacher's answers on this rank's cached batches (see vlsi_edge.distill.pseudo_labels)."""
    return f"pseudo_labels.r{rank:03d}.json"


def fingerprint(config, world: int) -> dict:
    """What must match between the cache and the run that reads it."""
    return {
        "data": {k: v for k, v in config.data.__dict__.items() if k != "eval_size"},
        "batch_size": config.train.batch_size,
        "grad_accum": config.train.grad_accum,
        "world": world,
        "steps": config.train.interact.steps,
    }


class TeacherCache:
    """Reads a cache written by `write_cache`, checked against the run's config."""

    def __init__(self, path: str | Path, config, world: int):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.path}: not a teacher cache (no meta.json); build one with --cache-teacher")
        self.meta = json.loads(meta_path.read_text())
        expected = fingerprint(config, world)
        if self.meta["fingerprint"] != json.loads(json.dumps(expected)):
            raise ConfigError(
                f"teacher cache {self.path} was built for {self.meta['fingerprint']}, but this run needs {expected}; "
                "rebuild it with --cache-teacher using this recipe"
            )
        if config.distill.kl != "forward":
            raise ConfigError("distill.kl: a top-k teacher cache supports only 'forward' KL")
        if config.distill.teacher_layers not in (None, self.meta["layers"]):
            raise ConfigError(
                f"distill.teacher_layers {config.distill.teacher_layers} differ from the cached layers {self.meta['layers']}"
            )

    @property
    def layers(self) -> list[int]:
        return self.meta["layers"]

    def load(self, step: int, micro: int, rank: int) -> tuple[list[TopK], TopK, torch.Tensor]:
        """(per-target TopK, final TopK, answer targets) of one micro-batch."""
        path = self.path / "shards" / f"s{step:06d}_m{micro:03d}_r{rank:03d}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from the teacher cache (was it built with fewer steps?)")
        shard = load_file(path)
        tops = [TopK(shard["logprobs"][i], shard["ids"][i]) for i in range(shard["logprobs"].shape[0])]
        return tops[:-1], tops[-1], shard["targets"]


def check_destination(out: Path) -> None:
    """--cache-teacher DIR: a new or empty folder, or a teacher cache to finish; never someone else's files."""
    atomic.check_writable_dir(out, "--cache-teacher")
    if out.is_dir() and any(out.iterdir()) and not ((out / "meta.json").is_file() or (out / "verbalize").is_dir()):
        raise ConfigError(f"--cache-teacher {out}: a folder with other files in it, not a teacher cache; choose a new "
                          "or empty folder")


def write_cache(session, out: Path, k: int, teacher_eval: dict) -> None:
    """Precompute every step-2 micro-batch of this rank (see the module docstring)."""
    from vlsi_edge.distill.steps import answer_states
    from vlsi_edge.families import build_batch

    s, c = session, session.config
    layers = s.heads.teacher_layers
    norm, head = s.models.family.final_norm(s.models.teacher), s.models.family.lm_head(s.models.teacher)
    steps = c.train.interact.steps
    for step in tqdm(range(steps), desc="teacher cache", disable=not s.par.is_main):
        for micro in range(c.train.grad_accum):
            samples = s.inputs.batch("unlabelled", step, micro)
            batch = build_batch(s.models.family, s.models.teacher_processor, samples)
            with torch.no_grad():
                states = answer_states(s.models.family, s.models.teacher, batch, layers)
                tops = [TopK.of(head(norm(s.heads.teacher_verbalizers(layer, states.hidden[layer]))), k, s.models.shared_vocab) for layer in layers]
                tops.append(TopK.of(states.logits, k, s.models.shared_vocab))
            tensors = {
                "logprobs": torch.stack([t.logprobs for t in tops]).half().contiguous(),
                "ids": torch.stack([t.ids for t in tops]).int().contiguous(),
                "targets": states.targets.contiguous(),
            }
            atomic.write_bytes(out / "shards" / f"s{step:06d}_m{micro:03d}_r{s.par.rank:03d}.safetensors", save(tensors))
    if s.inputs.pseudo_labels is not None:  # the answers the cached distributions were computed on
        atomic.write_json(out / pseudo_label_file(s.par.rank), s.inputs.pseudo_labels.answers)
    if s.par.is_main:
        s.models.teacher_processor.save_pretrained(out / "tokenizer")
        atomic.write_json(out / "meta.json", {
            "teacher": s.models.teacher_source,
            "layers": layers,
            "k": k,
            "shared_vocab": s.models.shared_vocab,
            "fingerprint": fingerprint(c, s.par.world),
            "teacher_accuracy": teacher_eval,
        })
    s.par.barrier()
