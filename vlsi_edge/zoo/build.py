"""Build the toy zoo: a tokenizer, a teacher and a student base, trained from scratch on ShapesVQA.

`python -m vlsi_edge.zoo build` reruns exactly what produced the shipped models (same seeds, same
steps); each model lands in `vlsi_edge/zoo/models/<name>/` with a `card.json` recording how it was
made and what it scores.

The pair is built for the regime VLsI is for (docs/BENCHMARKS.md, "the distillation world"):
- the teacher is deep (16 decoder layers) and trained on far more labelled data (128k items) with
  stochastic depth, so its answer forms gradually across depth (`python -m vlsi_edge.bench probe`);
- the student base is half as deep and narrower, starts from the teacher's frozen vision tower with its
  own connector (as Qwen2-VL's sizes share one ViT, so the gap sits in the language model), and has only
  the scarce labelled set: the first `LABELLED` train items, with early stopping on val.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import random
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

from vlsi_edge import atomic
from vlsi_edge.schedule import warmup_cosine
from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.evaluate import evaluate, evaluate_splits
from vlsi_edge.families import Family, TinySpec, build_batch, get_family
from vlsi_edge.families.tokenizer import family_tokenizer
from vlsi_edge.families.sources import ZOO_DIR

log = logging.getLogger(__name__)

FAMILY = "idefics3"
VOCAB_SIZE = 512
LABELLED = 2000  # N_L: the student's labelled items (= DataConfig.labelled's default)


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
    layer_drop: float = 0.0  # stochastic depth: decoder layer k is skipped with p = layer_drop * (k+1) / L
    labelled: int | None = None  # train only on the first n train items (epochs in seeded order); None: a fresh stream
    vision_from: str | None = None  # copy this zoo model's vision tower and keep it frozen
    eval_every: int = 0  # early stopping: score val every n steps and keep the best (0: keep the last)
    refine_steps: int = 0  # then this many more steps on fresh items, vision tower frozen, a new warm-up + cosine
    refine_lr: float = 5e-4


RECIPES: dict[str, ZooRecipe] = {
    "teacher": ZooRecipe(
        spec=TinySpec(
            text_layers=16, text_hidden=96, text_heads=4, text_kv_heads=2, text_intermediate=256,
            vision_layers=2, vision_hidden=96, vision_heads=4, vision_intermediate=192,
        ),
        steps=4000,
        layer_drop=0.2,
        refine_steps=2000,  # stochastic depth slows learning: 4,000 steps alone left colour at 0.59 on test
    ),
    "student": ZooRecipe(
        spec=TinySpec(
            text_layers=8, text_hidden=64, text_heads=4, text_kv_heads=2, text_intermediate=128,
            vision_layers=2, vision_hidden=96, vision_heads=4, vision_intermediate=192,
        ),
        steps=3000,  # 1,500 steps still gained 5 val points per 250: the base must be converged on its labels
        seed=1,
        labelled=LABELLED,
        vision_from="teacher",
        eval_every=250,
    ),
}


def build_tokenizer(family: Family, data: ShapesConfig):
    """A BPE trained on ShapesVQA text plus the family's chat template, so every task word is one token."""
    return family_tokenizer(family, data, items=20_000, vocab_size=VOCAB_SIZE)


@contextlib.contextmanager
def stochastic_depth(layers: torch.nn.ModuleList, p_max: float, generator: torch.Generator):
    """While active (training), skip decoder layer k with probability p_max * (k + 1) / L per step.

    LayerDrop (Fan et al. 2019) with the linear rule of stochastic depth (Huang et al. 2016): a skipped
    layer passes its input through, so every layer learns to refine the residual stream a little rather
    than to compute the answer in one place. Weights and architecture are unchanged; nothing is dropped
    at evaluation.
    """
    if p_max <= 0:
        yield
        return
    originals = [layer.forward for layer in layers]

    def skippable(forward, p):
        def run(hidden_states, *args, **kwargs):
            if layers.training and float(torch.rand((), generator=generator)) < p:
                return hidden_states
            return forward(hidden_states, *args, **kwargs)

        return run

    for k, layer in enumerate(layers):
        layer.forward = skippable(originals[k], p_max * (k + 1) / len(layers))
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward


def labelled_items(data: ShapesConfig, n: int, step: int, batch_size: int, seed: int) -> list:
    """Batch `step` of epochs over the first `n` train items, each epoch in a fresh seeded order."""
    dataset = ShapesVQA("train", size=n, config=data)
    first = step * batch_size
    return [dataset[_epoch_order(n, seed, epoch)[offset]] for epoch, offset in
            (divmod(position, n) for position in range(first, first + batch_size))]


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"zoo/{seed}/{epoch}").shuffle(order)
    return order


def refine(family: Family, processor, model, recipe: ZooRecipe, data: ShapesConfig) -> None:
    """Phase 2: `recipe.refine_steps` more steps on the next fresh train items, the vision tower frozen (so
    a student that copied it still holds the teacher's), stochastic depth as in phase 1, its own warm-up
    + cosine from `refine_lr`. Seeded on its own, so continuing a saved phase-1 model gives the same weights."""
    phase = ZooRecipe(spec=recipe.spec, steps=recipe.refine_steps, lr=recipe.refine_lr, warmup=50,
                      weight_decay=recipe.weight_decay, seed=recipe.seed + 1000)
    vision = {id(p) for m in family.vision_modules(model) for p in m.parameters()}
    params = [p for p in model.parameters() if id(p) not in vision]
    model.train()
    for m in family.vision_modules(model):
        m.requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, phase.warmup, phase.steps, floor=0.01))
    first = recipe.steps * recipe.batch_size  # phase 1 read train items [0, first)
    stream = ShapesVQA("train", size=first + phase.steps * recipe.batch_size, config=data)
    drop_rng = torch.Generator().manual_seed(phase.seed)
    bar = tqdm(range(phase.steps), desc="refine", mininterval=2)
    with stochastic_depth(family.decoder_layers(model), recipe.layer_drop, drop_rng):
        for step in bar:
            samples = [stream[first + step * recipe.batch_size + i] for i in range(recipe.batch_size)]
            loss = model(**build_batch(family, processor, samples)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
    for m in family.vision_modules(model):
        m.requires_grad_(True)
    model.eval()


def train_model(family: Family, processor, recipe: ZooRecipe, data: ShapesConfig, vision_source: Path | None = None):
    """Train a fresh model of `recipe.spec` on ShapesVQA train; returns (model, seconds, training log)."""
    torch.manual_seed(recipe.seed)
    tokenizer = family.tokenizer(processor)
    model = family.load(family.tiny_config(tokenizer, recipe.spec))
    frozen: set[int] = set()
    if recipe.vision_from:
        donor = family.load(vision_source)
        for mine, theirs in zip(family.vision_modules(model), family.vision_modules(donor)):
            mine.load_state_dict(theirs.state_dict())
            frozen |= {id(p) for p in mine.parameters()}
    params = [p for p in model.parameters() if id(p) not in frozen]
    model.train()
    for m in family.vision_modules(model) if frozen else ():
        m.requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, recipe.warmup, recipe.steps, floor=0.01))
    stream = ShapesVQA("train", size=recipe.steps * recipe.batch_size, config=data)
    val = ShapesVQA("val", config=data)
    val_items = [val[i] for i in range(len(val))]
    best = (-1.0, 0, None)  # (val accuracy, step, weights)
    history = []
    drop_rng = torch.Generator().manual_seed(recipe.seed)
    start = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc="train", mininterval=2)
    with stochastic_depth(family.decoder_layers(model), recipe.layer_drop, drop_rng):
        for step in bar:
            if recipe.labelled:
                samples = labelled_items(data, recipe.labelled, step, recipe.batch_size, recipe.seed)
            else:
                samples = [stream[step * recipe.batch_size + i] for i in range(recipe.batch_size)]
            loss = model(**build_batch(family, processor, samples)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            done = step + 1
            if recipe.eval_every and (done % recipe.eval_every == 0 or done == recipe.steps):
                accuracy = evaluate(model, family, processor, val_items)["accuracy"]
                history.append({"step": done, "val": accuracy, "loss": round(loss.item(), 4)})
                if accuracy > best[0]:
                    best = (accuracy, done, copy.deepcopy(model.state_dict()))
                model.train()
                for m in family.vision_modules(model) if frozen else ():
                    m.eval()
    if recipe.refine_steps:
        refine(family, processor, model, recipe, data)
    seconds = time.perf_counter() - start
    if best[2] is not None:
        model.load_state_dict(best[2])
        log.info("early stopping: best val %.3f at step %d of %d", best[0], best[1], recipe.steps)
    model.eval()
    return model, seconds, {"val_curve": history, "kept_step": best[1] if best[2] is not None else recipe.steps}


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
        vision_source = out_dir / recipe.vision_from if recipe.vision_from else None
        model, seconds, training = train_model(family, processor, recipe, data, vision_source)
        card = save_model(family, name, model, processor, recipe, data, seconds, training, out_dir)
        log.info("%s: %s", name, json.dumps(card["accuracy"]))
        cards[name] = card
    return {**cards, **annotate(names, out_dir)}


def save_model(family: Family, name: str, model, processor, recipe: ZooRecipe, data: ShapesConfig, seconds: float,
               training: dict, out_dir: Path = ZOO_DIR) -> dict:
    """Save a trained zoo model with its card (scored from the saved weights), replacing the old one whole."""
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
            "training": training,
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
    return card


def _summary(result: dict) -> dict:
    """Keep the numbers a card needs: overall and per-family accuracy and the item count."""
    return {k: result[k] for k in ("accuracy", "total", "per_family") if k in result}


def annotate(names: tuple[str, ...] = tuple(RECIPES), out_dir: Path = ZOO_DIR) -> dict[str, dict]:
    """Measurements a card records about its model's use as a pair, written into the cards:

    teacher  `probe`: the verbalizer probe (`python -m vlsi_edge.bench probe --model zoo:teacher`), the
             precondition for layer matching — first-answer-token accuracy per layer and family;
    student  `reference.sft_only`: what plain fine-tuning on the labelled set reaches with the default
             recipe's budget (`python -m vlsi_edge.train --set distill.method=sft`, seed 0), shown in
             every training report next to the run's own student.
    """
    from vlsi_edge.benchmarks.probe import probe
    from vlsi_edge.config import load_config
    from vlsi_edge.contracts.run_dir import RunDir, StageName
    from vlsi_edge.distill.trainer import train
    from vlsi_edge.recipes import RunConfig

    cards = {}
    for name in names:
        card_path = out_dir / name / "card.json"
        card = json.loads(card_path.read_text())
        if name == "teacher":
            result = probe(str(out_dir / name))
            card["probe"] = {k: result[k] for k in ("probe", "chance", "accuracy", "summary")}
            card["probe"]["command"] = "python -m vlsi_edge.bench probe --model zoo:teacher"
        elif name == "student":
            overrides = ["distill.method=sft"]
            config = load_config(RunConfig, overrides=overrides)
            with tempfile.TemporaryDirectory() as tmp:
                progress, _ = train(config, RunDir.create(Path(tmp), "sft-only", config))
            card["reference"] = {"sft_only": {
                "accuracy": {split: _summary(r) for split, r in progress.evals["after_step3"].items()},
                "early_stopping": {k: v for k, v in progress.stages[StageName.SFT].get("early_stopping", {}).items()},
                "command": "python -m vlsi_edge.train " + " ".join(f"--set {o}" for o in overrides),
                "seed": config.seed,
            }}
        atomic.write_json(card_path, card)
        cards[name] = card
    return cards
