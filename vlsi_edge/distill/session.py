"""Everything one training run holds: models, processors, verbalizers, data — and who trains what.

`stage_parameters` is the single place that decides which parameters a stage trains:

    verbalize_teacher  teacher verb-FFNs
    verbalize_student  student verb-FFNs
    interact           student decoder layers (full or LoRA) + student verb-FFNs
    final_kd           student decoder layers (full or LoRA)
    hidden_l2          student decoder layers (full or LoRA) + the student->teacher projections
    sft                student embeddings, decoder layers, final norm, lm_head, projector (vision frozen)

Everything else — the teacher, both models' final norm and lm_head in steps 1-2, vision towers — is
frozen (requires_grad False), so gradients exist exactly where the stage trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from vlsi_edge.config import ConfigError
from vlsi_edge.contracts.run_dir import SECOND_STAGES, StageName
from vlsi_edge.data import ShapesVQA, load_conversations
from vlsi_edge.data.shapes import shapes_config
from vlsi_edge.distill.data import TrainData, teacher_answered
from vlsi_edge.distill.pseudo_labels import PseudoLabels
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.teacher_cache import TeacherCache, pseudo_label_file
from vlsi_edge.distill.verbalizer import Verbalizers, check_target_layers, load_verbalizers, save_verbalizers, target_layers
from vlsi_edge.evaluate import evaluate, evaluate_splits
from vlsi_edge.families import Family, check_vocab_compatible, get_family
from vlsi_edge.families.sources import family_of, load_source, model_dir
from vlsi_edge.recipes import RunConfig

log = logging.getLogger(__name__)


@dataclass
class Models:
    """The teacher and the student, where each came from, and the vocabulary they share."""

    family: Family
    teacher: PreTrainedModel | None  # None when step 2 reads a teacher cache
    teacher_processor: Any
    teacher_source: str
    student: PreTrainedModel
    student_processor: Any
    student_source: str
    shared_vocab: int
    peft_model: Any = field(default=None, repr=False)  # the student wrapped with LoRA, while it is

    @property
    def lora_active(self) -> bool:
        return self.peft_model is not None

    def merge_lora(self) -> None:
        """Fold LoRA into the student's weights: from here on it is a plain HF model again."""
        if self.peft_model is not None:
            self.student = self.peft_model.merge_and_unload()
            self.peft_model = None


@dataclass
class TargetHeads:
    """What training adds beside the models: the verbalizers of the target layers, hidden-l2's projections."""

    teacher_layers: list[int]
    teacher_verbalizers: Verbalizers | None  # None with a teacher cache
    student_verbalizers: Verbalizers
    projections: nn.ModuleDict | None = None  # hidden-l2: student target layer -> Linear(d_s, d_t)


@dataclass
class Inputs:
    """Where batches come from: the seeded streams, the teacher's answers, the teacher cache; the matcher's seed."""

    data: TrainData
    generator: torch.Generator  # same seed on every rank: same matches
    pseudo_labels: PseudoLabels | None = None  # the teacher's answers for the unlabelled streams
    teacher_cache: TeacherCache | None = None
    cache_root: Path | None = None

    def batch(self, stream: str, step: int, micro: int = 0) -> list:
        """Micro-batch `micro` of step `step` of `stream`, with the teacher's answers where the stream uses them."""
        samples = self.data.batch(stream, step, micro)
        if self.pseudo_labels is not None and teacher_answered(stream):
            samples = self.pseudo_labels.relabel(samples)
        return samples


@dataclass
class Session:
    """One training run's state, by concern: the run's config and ranks, the models, the heads, the inputs."""

    config: RunConfig
    par: Parallel
    models: Models
    heads: TargetHeads
    inputs: Inputs
    best_student: dict | None = None  # early stopping: the best-on-val student weights so far

    # ---- teacher verbalizer cache ---------------------------------------------------------------
    def teacher_cache_dir(self) -> Path | None:
        """Keyed by the teacher checkpoint, its target layers, the data, the verbalization recipe and the
        run seed (it initialises the verbalizers and picks the training examples)."""
        if self.inputs.cache_root is None:
            return None
        c = self.config
        key = {
            "teacher": _checkpoint_fingerprint(self.models.teacher_source, c.seed),
            "quantization": c.model.teacher_quantization,
            "layers": self.heads.teacher_layers,
            "verbalizer": c.distill.verbalizer,
            "data": json.loads(json.dumps(c.data.__dict__)),
            "schedule": c.train.verbalize.__dict__,
            "batch": [c.train.batch_size, c.train.grad_accum, self.par.world],
            "seed": c.seed,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.inputs.cache_root / "teacher-verbalizers" / digest

    def load_cached_teacher_verbalizers(self) -> bool:
        path = self.teacher_cache_dir()
        if path is None or not (path / "verbalizers.json").is_file():
            return False
        cached, _ = load_verbalizers(path)
        self.heads.teacher_verbalizers.load_state_dict(cached.state_dict())
        log.info("teacher verbalizers from cache %s", path)
        return True

    def store_cached_teacher_verbalizers(self) -> None:
        path = self.teacher_cache_dir()
        if path is not None and self.par.is_main:
            save_verbalizers(self.heads.teacher_verbalizers, path, {"teacher": self.models.teacher_source})


def _checkpoint_fingerprint(source: str, seed: int) -> str:
    """Cheap identity of a checkpoint: its weight files' names, sizes and mtimes (no hashing of GBs)."""
    path = Path(source)
    if not path.is_dir():
        return f"{source}@seed{seed}"  # tiny:<n> models are a function of the seed
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    return json.dumps([[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files])


def resolve_targets(config: RunConfig, family: Family, n_t: int, n_s: int) -> tuple[list[int], list[int]]:
    """(teacher layers, student layers) from explicit lists or stride/offset; validated."""
    d = config.distill
    picked = []
    for role, explicit, n, stride, offset in (
        ("teacher", d.teacher_layers, n_t, d.teacher_stride, d.teacher_offset),
        ("student", d.student_layers, n_s, d.student_stride, d.student_offset),
    ):
        if explicit is not None:
            layers = list(explicit)
        else:
            if not 0 <= offset < n:
                raise ConfigError(f"distill.{role}_offset: {offset} is outside the {role}'s decoder layers [0, {n})")
            # The last layer is covered by the final-logit term: never verbalize it by default.
            layers = [k for k in target_layers(n, stride, offset) if k != n - 1]
        try:
            check_target_layers(layers, n, role)
        except ValueError as e:
            raise ConfigError(f"distill.{role}_layers: {e}") from None
        if not layers:
            raise ConfigError(f"distill: no {role} target layers ({role} has {n} decoder layers); set distill.{role}_layers")
        picked.append(layers)
    t_layers, s_layers = picked
    if len(s_layers) > len(t_layers):
        raise ConfigError(
            f"distill: t_s = {len(s_layers)} student targets > t_l = {len(t_layers)} teacher targets "
            f"(student {s_layers}, teacher {t_layers}); each student target needs its own deeper teacher target"
        )
    return t_layers, s_layers


def check_inputs(config: RunConfig) -> None:
    """What can be checked before any weights load or anything is created: the model sources exist and are
    of `model.family`, their processors load and their tokenizers agree on the training text, and the
    dataset files read. Raises ConfigError / DatasetError / VocabularyMismatch naming the key."""
    m, d = config.model, config.data
    family = get_family(m.family)
    sources = [("student", m.student)] + ([] if config.distill.teacher_cache else [("teacher", m.teacher)])
    tokenizers = {}
    for role, source in sources:
        if source.startswith("tiny:"):
            layers = source.removeprefix("tiny:")
            if not layers.isdigit() or int(layers) < 1:
                raise ConfigError(f"model.{role}: {source!r}: expected tiny:<layers> with layers >= 1, e.g. tiny:4")
            continue  # built in code
        try:
            path = model_dir(source)
        except FileNotFoundError as e:
            raise ConfigError(f"model.{role}: {e}") from None
        if not path.is_dir():
            raise ConfigError(f"model.{role}: {source!r} is not a directory; use a local checkpoint path, zoo:<name> or "
                              "tiny:<layers> (nothing is downloaded)")
        try:
            found = family_of(path)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"model.{role}: {e}") from None
        if found.name != family.name:
            raise ConfigError(f"model.{role}: {path} is a {found.name} checkpoint but model.family is {family.name}; "
                              f"set model.family={found.name} (teacher and student must be one family)")
        try:
            tokenizers[role] = family.tokenizer(family.load_processor(path))  # seconds, where weights take minutes
        except ConfigError as e:
            raise ConfigError(f"model.{role}: {e}") from None
    if d.image_root is not None and not Path(d.image_root).is_dir():
        raise ConfigError(f"data.image_root: {d.image_root} is not a directory")
    datasets = {}
    for key in ("dataset", "eval_dataset"):
        value = getattr(d, key)
        if value and value != "shapes":
            datasets[key] = load_conversations(value, image_root=d.image_root, verify_images=False,
                                               sandbox=d.image_sandbox)  # DatasetError names the record
    if len(tokenizers) == 2:
        if "dataset" in datasets:
            first = [datasets["dataset"].words(i) for i in range(min(len(datasets["dataset"]), 64))]
        else:
            train = ShapesVQA("train", size=64, config=shapes_config(d))
            first = [(x.question, x.answer, x.history) for x in map(train.__getitem__, range(64))]
        texts = [family.prompt(question, history) + family.answer_text(answer) for question, answer, history in first]
        check_vocab_compatible(tokenizers["teacher"], tokenizers["student"], texts=texts)


def build_session(config: RunConfig, par: Parallel, cache_root: Path | None = None) -> Session:
    m, d = config.model, config.distill
    family = get_family(m.family)
    student, s_proc, s_src = load_source(family, m.student, m.dtype, seed=config.seed + 1)
    cache = None
    if d.teacher_cache:
        # Step 2 reads the teacher's distributions from disk: the teacher is never loaded.
        cache = TeacherCache(d.teacher_cache, config, par.world)
        teacher, t_proc, t_src = None, family.load_processor(cache.path / "tokenizer"), cache.meta["teacher"]
    else:
        teacher, t_proc, t_src = load_source(family, m.teacher, m.dtype, m.teacher_quantization, seed=config.seed)
        teacher.eval().requires_grad_(False)
    data = TrainData(config.data, config.train.batch_size, config.train.grad_accum, par.rank, par.world, config.seed)
    probe = [family.prompt(x.question, x.history) + family.answer_text(x.answer) for x in data.batch("labelled", 0)]
    shared = check_vocab_compatible(family.tokenizer(t_proc), family.tokenizer(s_proc), teacher, student, probe)
    student.train()
    if m.gradient_checkpointing:
        student.activation_checkpointing_enable({"use_reentrant": False})
        student.config.use_cache = False
    n_t = len(family.decoder_layers(teacher)) if teacher is not None else max(cache.layers) + 2
    t_layers, s_layers = resolve_targets(config, family, n_t, len(family.decoder_layers(student)))
    if cache is not None:
        t_layers = cache.layers
    residual = d.verbalizer == "residual"
    torch.manual_seed(config.seed)
    dtype = next(student.parameters()).dtype
    t_verb = Verbalizers(family.hidden_size(teacher), t_layers, residual).to(dtype) if teacher is not None else None
    s_verb = Verbalizers(family.hidden_size(student), s_layers, residual).to(dtype)
    generator = torch.Generator().manual_seed(config.seed)  # same seed on every rank: same matches
    projections = None
    if d.method == "hidden-l2":
        if teacher is None:
            raise ConfigError("distill.method=hidden-l2 needs the teacher's hidden states; it cannot read distill.teacher_cache")
        d_s, d_t = family.hidden_size(student), family.hidden_size(teacher)
        projections = nn.ModuleDict({str(k): nn.Linear(d_s, d_t, bias=False) for k in s_layers}).to(dtype)
    labels = None
    if config.data.distill_answers == "teacher" and d.method != "sft":
        if cache is not None:
            labels = PseudoLabels(cache.path / pseudo_label_file(par.rank))
        else:
            path = None if cache_root is None else cache_root / "pseudo-labels" / f"{_labels_key(config, t_src)}.json"
            labels = PseudoLabels(path, teacher, family, t_proc)
    log.info("teacher %s: targets %s; student %s: targets %s", t_src, t_layers, s_src, s_layers)
    return Session(
        config, par,
        models=Models(family, teacher, t_proc, t_src, student, s_proc, s_src, shared),
        heads=TargetHeads(t_layers, t_verb, s_verb, projections),
        inputs=Inputs(data, generator, labels, cache, cache_root),
    )


def _labels_key(config: RunConfig, teacher_source: str) -> str:
    """Pseudo-labels depend on the teacher and the data only (not on the run seed or the method)."""
    key = {"teacher": _checkpoint_fingerprint(teacher_source, config.seed),
           "quantization": config.model.teacher_quantization,
           "data": {k: getattr(config.data, k) for k in ("dataset", "image_root", "seed", "image_size", "noise")}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _lora_targets(family: Family, model: PreTrainedModel) -> list[str]:
    """Full names of every Linear inside the decoder layers (never the vision tower's)."""
    inside = {id(m) for layer in family.decoder_layers(model) for m in layer.modules()}
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and id(m) in inside]


def stage_parameters(s: Session, stage: str) -> list[torch.nn.Parameter]:
    """Set requires_grad for `stage` (see the module docstring) and return the trained parameters."""
    c = s.config.train
    for module in (s.models.teacher, s.models.student, s.heads.teacher_verbalizers, s.heads.student_verbalizers, s.heads.projections):
        if module is not None:
            module.requires_grad_(False)
    if stage == StageName.VERBALIZE_TEACHER:
        return _enable(s.heads.teacher_verbalizers.parameters())
    if stage == StageName.VERBALIZE_STUDENT:
        return _enable(s.heads.student_verbalizers.parameters())
    if stage in SECOND_STAGES:
        extra = {StageName.INTERACT: list(s.heads.student_verbalizers.parameters()), StageName.FINAL_KD: [],
                 StageName.HIDDEN_L2: list(s.heads.projections.parameters()) if s.heads.projections is not None else []}[stage]
        if c.student_training == "lora":
            if s.models.peft_model is None:
                from peft import LoraConfig, get_peft_model

                lora = LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=0.0,
                                  target_modules=_lora_targets(s.models.family, s.models.student))
                s.models.peft_model = get_peft_model(s.models.student, lora)
            lora_params = [p for n, p in s.models.student.named_parameters() if "lora_" in n]
            return _enable([*lora_params, *extra])
        return _enable([*s.models.family.decoder_layers(s.models.student).parameters(), *extra])
    if stage == StageName.SFT:
        vision = {id(p) for m in s.models.family.vision_modules(s.models.student) for p in m.parameters()}
        return _enable([p for p in s.models.student.parameters() if id(p) not in vision])
    raise ValueError(f"unknown stage {stage!r}")


def _enable(params) -> list[torch.nn.Parameter]:
    params = list(params)
    for p in params:
        p.requires_grad_(True)
    return params


def evaluate_model(s: Session, model: PreTrainedModel, processor: Any) -> dict:
    """Exact-match accuracy per split on the main rank (other ranks wait); {} for non-ShapesVQA data."""
    result: dict = {}
    if s.par.is_main:
        d = s.config.data
        if d.dataset == "shapes":
            result = evaluate_splits(model, s.models.family, processor, shapes_config(d), d.eval_size)
        elif d.eval_dataset:
            samples = load_conversations(d.eval_dataset, image_root=d.image_root, sandbox=d.image_sandbox)
            samples = list(samples)[: d.eval_size]
            result = {"eval": evaluate(model, s.models.family, processor, samples)}
    s.par.barrier()
    return s.par.broadcast_object(result)


def zoo_card(s: Session, source: str) -> dict | None:
    """A zoo model's card when its numbers were measured exactly as this run would measure (else None).

    The card's accuracies come from the same `evaluate_splits` on the same splits (`python -m vlsi_edge.zoo
    evaluate` re-checks them); reusing them saves every run two full evaluations.
    """
    card_path = Path(source) / "card.json"
    d, m = s.config.data, s.config.model
    if not card_path.is_file() or d.dataset != "shapes" or d.eval_size is not None:
        return None
    if m.dtype != "float32" or m.teacher_quantization != "none":
        return None
    card = json.loads(card_path.read_text())
    wanted = shapes_config(d)
    recorded = card.get("data", {})
    if any(recorded.get(k) != getattr(wanted, k) for k in ("image_size", "seed", "noise")):
        return None
    return card


def validation_items(s: Session) -> list:
    """What early stopping scores: ShapesVQA val, or the dataset's `data.eval_dataset`."""
    d = s.config.data
    if d.dataset == "shapes":
        from vlsi_edge.data import ShapesVQA

        val = ShapesVQA("val", config=shapes_config(d))
        return [val[i] for i in range(len(val) if d.eval_size is None else min(d.eval_size, len(val)))]
    if d.eval_dataset:
        return list(load_conversations(d.eval_dataset, image_root=d.image_root, sandbox=d.image_sandbox))[: d.eval_size]
    raise ConfigError("train.early_stopping needs validation data: ShapesVQA or data.eval_dataset")


def validation_accuracy(s: Session, items: list) -> float:
    """Exact-match accuracy of the student on `items`, the same on every rank (main rank scores)."""
    accuracy = evaluate(s.models.student, s.models.family, s.models.student_processor, items)["accuracy"] if s.par.is_main else 0.0
    s.par.barrier()
    return s.par.broadcast_object(accuracy)
