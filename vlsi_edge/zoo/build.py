"""Build the toy zoo: a tokenizer, a teacher and a student base, trained from scratch on ShapesVQA.

`python -m vlsi_edge.zoo build` reruns exactly what produced the shipped models (same seeds, same
steps); each model lands in `vlsi_edge/zoo/models/<name>/` with a `card.json` recording how it was
made and what it scores. The student base is deliberately smaller *and* trained for fewer steps —
the situation distillation is for: a weak small model next to a strong large one.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

from vlsi_edge import atomic
from vlsi_edge.data import ShapesConfig, ShapesVQA, corpus
from vlsi_edge.evaluate import evaluate_splits
from vlsi_edge.families import Family, TinySpec, build_batch, get_family, train_bpe

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).parent / "models"
FAMILY = "idefics3"
VOCAB_SIZE = 512


@dataclass(frozen=True)
class ZooRecipe:
    """How one zoo model is made."""

    spec: TinySpec
    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0


RECIPES: dict[str, ZooRecipe] = {
    "teacher": ZooRecipe(
        spec=TinySpec(
            text_layers=8, text_hidden=128, text_heads=4, text_kv_heads=2, text_intermediate=384,
            vision_layers=2, vision_hidden=96, vision_heads=4, vision_intermediate=192,
        ),
        steps=8000,
    ),
    "student": ZooRecipe(
        spec=TinySpec(
            text_layers=4, text_hidden=64, text_heads=4, text_kv_heads=2, text_intermediate=128,
            vision_layers=1, vision_hidden=64, vision_heads=2, vision_intermediate=128,
        ),
        steps=2500,
        seed=1,
    ),
}


def build_tokenizer(family: Family, data: ShapesConfig):
    """A BPE trained on ShapesVQA text plus the family's chat template, so every task word is one token."""
    template = family.prompt("question", history=(("question", "answer"),)) + family.answer_text("answer")
    texts = [template, *corpus(20_000, data)]
    return train_bpe(texts, family.special_tokens, vocab_size=VOCAB_SIZE)


def _lr_factor(step: int, recipe: ZooRecipe) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < recipe.warmup:
        return (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def train_model(family: Family, processor, recipe: ZooRecipe, data: ShapesConfig):
    """Train a fresh model of `recipe.spec` on ShapesVQA train; returns (model, seconds)."""
    torch.manual_seed(recipe.seed)
    tokenizer = family.tokenizer(processor)
    model = family.load(family.tiny_config(tokenizer, recipe.spec))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))
    train = ShapesVQA("train", size=recipe.steps * recipe.batch_size, config=data)
    start = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc="train", mininterval=2)
    for step in bar:
        samples = [train[step * recipe.batch_size + i] for i in range(recipe.batch_size)]
        batch = build_batch(family, processor, samples)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
    model.eval()
    return model, time.perf_counter() - start


def build_zoo(names: tuple[str, ...] = tuple(RECIPES), out_dir: Path = ZOO_DIR) -> dict[str, dict]:
    """Train and save the named zoo models; returns their cards."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    family = get_family(FAMILY)
    data = ShapesConfig()
    tokenizer = build_tokenizer(family, data)
    cards = {}
    for name in names:
        recipe = RECIPES[name]
        processor = family.build_processor(tokenizer, recipe.spec)
        log.info("training %s: %s", name, recipe)
        model, seconds = train_model(family, processor, recipe, data)
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
            staging = Path(tmp) / name
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
            # Score the *saved* weights, so the card is what a user who loads the zoo gets.
            reloaded = family.load(staging)
            accuracy = evaluate_splits(reloaded, family, family.load_processor(staging), data)
            card = {
                "name": name,
                "family": FAMILY,
                "spec": asdict(recipe.spec),
                "parameters": sum(p.numel() for p in model.parameters()),
                "data": asdict(data),
                "train": {k: v for k, v in asdict(recipe).items() if k != "spec"},
                "wall_time_s": round(seconds, 1),
                "accuracy": {split: _summary(result) for split, result in accuracy.items()},
                "built_with": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                },
                "command": "python -m vlsi_edge.zoo build",
            }
            atomic.write_json(staging / "card.json", card)
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic.replace_dir(staging, out_dir / name)
        log.info("%s: %s", name, json.dumps(card["accuracy"]))
        cards[name] = card
    return cards


def _summary(result: dict) -> dict:
    """Keep the numbers a card needs: overall and per-family accuracy and the item count."""
    return {k: result[k] for k in ("accuracy", "total", "per_family") if k in result}
