"""The VLsI training run, top to bottom: load -> (teacher eval) -> stages -> save -> report.

Stages per method (all share the data streams and the student-step budget):

    vlsi       verbalize_teacher -> verbalize_student -> interact -> sft
    final-kd   final_kd (interact's budget) -> sft
    hidden-l2  hidden_l2 (interact's budget) -> sft
    sft        sft (interact + sft budgets)

Steps 1-2 and the KD baselines read the unlabelled stream (teacher answers), SFT reads the labelled one
(vlsi_edge.distill.data). With `train.schedule=one-cosine` (default) every method's student steps follow
one warm-up + cosine over the same total, so the methods differ only in what the first part optimises.

Each stage is the same loop (`run_stage`): build the batch of this step, compute the stage's loss
(`vlsi_edge.distill.steps`), backward, average gradients across ranks, clip, step, log, checkpoint.
Progress (stage, step, evaluations, timings, matching histogram) lives in the checkpoint, so
`--resume` continues a killed run exactly where its last checkpoint left it.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
import zlib
from pathlib import Path
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from vlsi_edge import atomic
from vlsi_edge.config import dump_yaml
from vlsi_edge.contracts.quantize_aware import write_record
from vlsi_edge.contracts.run_dir import SECOND_STAGES, RunDir, StageName
from vlsi_edge.distill import checkpoint as ckpt
from vlsi_edge.distill import quant_aware
from vlsi_edge.distill.early_stopping import EarlyStopping
from vlsi_edge.distill.matching import match_layers
from vlsi_edge.schedule import warmup_cosine
from vlsi_edge.memory import peak_rss_mb, reset_peak_rss
from vlsi_edge.distill.parallel import Parallel
from vlsi_edge.distill.session import (
    Session,
    build_session,
    zoo_card,
    evaluate_model,
    stage_parameters,
)
from vlsi_edge.distill.steps import (
    Heads,
    KLSettings,
    answer_states,
    final_kd_loss,
    hidden_l2_loss,
    interaction_loss,
    sft_loss,
    verbalization_losses,
)
from vlsi_edge.distill.teacher_cache import write_cache
from vlsi_edge.distill.verbalizer import save_verbalizers
from vlsi_edge.families import build_batch
from vlsi_edge.recipes import RunConfig, StageConfig

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    steps: int
    schedule: StageConfig  # the learning-rate schedule this stage follows (may span several stages)
    stream: str  # data stream (see vlsi_edge.distill.data)
    offset: int = 0  # first step of the stream this stage reads
    lr_offset: int = 0  # where in `schedule` this stage's first step is


SECOND_STAGE = {"vlsi": StageName.INTERACT, "final-kd": StageName.FINAL_KD, "hidden-l2": StageName.HIDDEN_L2}


def plan(config: RunConfig) -> list[Stage]:
    t, method = config.train, config.distill.method
    n2, n3 = t.interact.steps, t.sft.steps
    if t.schedule == "one-cosine":
        one = StageConfig(steps=n2 + n3, lr=t.interact.lr, lr_min=t.sft.lr_min, warmup=t.interact.warmup)
        second, third = (one, 0), (one, n2)
    else:
        second, third = (t.interact, 0), (t.sft, 0)
    if method == "sft":
        if t.schedule == "one-cosine":
            return [Stage(StageName.SFT, n2 + n3, one, "labelled")]
        total = StageConfig(steps=n2 + n3, lr=t.sft.lr, lr_min=t.sft.lr_min, warmup=t.sft.warmup)
        return [Stage(StageName.SFT, n2 + n3, total, "labelled")]
    stages = [Stage(SECOND_STAGE[method], n2, second[0], "unlabelled", lr_offset=second[1]),
              Stage(StageName.SFT, n3, third[0], "labelled", offset=n2, lr_offset=third[1])]
    if method == "vlsi":
        # With a teacher cache the teacher's verbalized distributions are already on disk.
        teacher = [] if config.distill.teacher_cache else [Stage(StageName.VERBALIZE_TEACHER, t.verbalize.steps, t.verbalize, "verbalizer")]
        stages = [*teacher, Stage(StageName.VERBALIZE_STUDENT, t.verbalize.steps, t.verbalize, "verbalizer"), *stages]
    return stages


@dataclass
class Progress:
    """What a checkpoint remembers beyond tensors (JSON)."""

    stage_index: int = 0
    step: int = 0  # completed steps of the current stage
    evals: dict = field(default_factory=dict)  # "teacher" | "student_base" | "after_step2" | "after_step3" -> splits
    stages: dict = field(default_factory=dict)  # stage -> {"wall_time_s", "peak_rss_mb", "steps", ...}
    heatmap: dict = field(default_factory=dict)  # "early" | "late" -> [t_s][t_l] match counts
    match_entropy: list = field(default_factory=list)  # per interaction step: sampling entropy per student target
    match_uniformity: list = field(default_factory=list)  # per step and target: entropy / log(candidates), None if 1
    early_stopping: dict = field(default_factory=dict)  # SFT: {"curve": [[step, val]], "best": [val, step]}
    lora_active: bool = False


def train(config: RunConfig, run: RunDir, resume: bool = False) -> tuple[Progress, Session]:
    par = Parallel.from_env()
    s = build_session(config, par, cache_root=run.path.parent / "cache")
    if par.is_main:
        run.point_latest()  # the run has started for real: only now does runs/latest move
    progress = Progress()
    if resume and ckpt.exists(run):
        progress = Progress(**ckpt.load_progress(run))
        ckpt.restore_models(run, s, progress.lora_active)
        run.truncate_metrics(lambda r: _before(r, progress, plan(config)))
        log.info("resuming at stage %d step %d", progress.stage_index, progress.step)

    stages = plan(config)
    if "teacher" not in progress.evals:
        progress.evals["teacher"] = (
            s.inputs.teacher_cache.meta["teacher_accuracy"] if s.inputs.teacher_cache
            else (zoo_card(s, s.models.teacher_source) or {}).get("accuracy") or evaluate_model(s, s.models.teacher, s.models.teacher_processor)
        )
    reference = (zoo_card(s, s.models.student_source) or {}).get("reference", {}).get("sft_only")
    if reference and "sft_only_reference" not in progress.evals:
        progress.evals["sft_only_reference"] = reference["accuracy"]
        progress.evals["sft_only_reference_command"] = reference["command"]
    for index, stage in enumerate(stages):
        if index < progress.stage_index:
            continue
        if stage.name in (*SECOND_STAGES, StageName.SFT) and "student_base" not in progress.evals:
            progress.evals["student_base"] = (
                (zoo_card(s, s.models.student_source) or {}).get("accuracy") or evaluate_model(s, s.models.student, s.models.student_processor)
            )
        scheme = config.distill.quantize_aware
        if scheme and stage.name in (*SECOND_STAGES, StageName.SFT) and not quant_aware.is_prepared(s.models.student):
            quant_aware.prepare(s.models.student, s.models.family, scheme, config.distill.quantize_group_size)
            log.info("steps 2-3 train through %s fake quantization (group %d)", scheme, config.distill.quantize_group_size)
        if stage.name == StageName.VERBALIZE_TEACHER and progress.step == 0 and s.load_cached_teacher_verbalizers():
            progress.stages[stage.name] = {"steps": 0, "wall_time_s": 0.0, "peak_rss_mb": 0.0, "from_cache": True}
        else:
            run_stage(s, run, stage, progress, resume_step=progress.step)
        _finish_stage(s, run, stage, progress)
        progress.stage_index, progress.step = index + 1, 0
        ckpt.save(run, s, progress, None, None)

    # Every rank must end with the same student and the same matching history.
    checksum = torch.stack([p.detach().double().sum() for p in s.models.student.parameters()]).sum().reshape(1)
    par.check_agreement(checksum, "the student weights")
    par.check_agreement(torch.tensor([zlib.crc32(json.dumps(progress.heatmap).encode())]), "the matched layers")
    if config.distill.quantize_aware:
        quant_aware.unprepare(s.models.student)  # save the float twin; the exporter quantizes it back
    if par.is_main:
        s.models.student.save_pretrained(run.path / "student")
        s.models.student_processor.save_pretrained(run.path / "student")
        if config.distill.quantize_aware:
            write_record(run.path / "student", config.distill.quantize_aware, config.distill.quantize_group_size)
        if config.distill.method == "vlsi":
            meta = {"teacher": s.models.teacher_source, "student": s.models.student_source}
            if s.heads.teacher_verbalizers is not None:
                save_verbalizers(s.heads.teacher_verbalizers, run.path / "verbalizers" / "teacher", meta)
            save_verbalizers(s.heads.student_verbalizers, run.path / "verbalizers" / "student", meta)
    par.barrier()
    return progress, s


def _finish_stage(s: Session, run: RunDir, stage: Stage, progress: Progress) -> None:
    if s.inputs.pseudo_labels is not None:
        s.inputs.pseudo_labels.save()
    if stage.name in SECOND_STAGE.values():
        s.models.merge_lora()
        progress.lora_active = False
        if s.config.train.evaluate_after_step2:
            progress.evals["after_step2"] = evaluate_model(s, s.models.student, s.models.student_processor)
    elif stage.name == StageName.SFT:
        progress.evals["after_step3"] = evaluate_model(s, s.models.student, s.models.student_processor)
    elif stage.name == StageName.VERBALIZE_TEACHER and not progress.stages[stage.name].get("from_cache"):
        s.store_cached_teacher_verbalizers()


def _before(record: dict, progress: Progress, stages: list[Stage]) -> bool:
    """Metric lines to keep on resume: those of finished stages and of steps before the checkpoint."""
    names = [st.name for st in stages]
    index = names.index(record["stage"]) if record.get("stage") in names else -1
    return index < progress.stage_index or (index == progress.stage_index and record["step"] < progress.step)


def _lr_lambda(schedule: StageConfig, offset: int = 0):
    """Linear warm-up, then cosine from lr to lr_min (as a factor of lr); the stage starts at `offset`."""

    return lambda step: warmup_cosine(step + offset, schedule.warmup, schedule.steps, schedule.lr_min / schedule.lr)


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient: training stops and nothing is saved as the student."""


def run_stage(s: Session, run: RunDir, stage: Stage, progress: Progress, resume_step: int = 0) -> None:
    config = s.config
    params = stage_parameters(s, stage.name)
    progress.lora_active = s.models.lora_active
    optimizer = torch.optim.AdamW(params, lr=stage.schedule.lr, weight_decay=config.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(stage.schedule, stage.lr_offset))
    if resume_step:
        ckpt.restore_optimizer(run, optimizer, scheduler)
    stats = progress.stages.setdefault(stage.name, {"steps": stage.steps, "wall_time_s": 0.0})
    early = EarlyStopping(s, progress.early_stopping) if stage.name == StageName.SFT and config.train.early_stopping else None
    if early is not None and resume_step == 0:
        early.score(0)
    reset_peak_rss()
    started = time.perf_counter() - stats["wall_time_s"]
    bar = tqdm(range(resume_step, stage.steps), desc=stage.name, disable=not s.par.is_main, mininterval=1)
    step_times: list[float] = []
    for step in bar:
        tick = time.perf_counter()
        terms: dict[str, float] = {}
        tokens = 0
        for micro in range(config.train.grad_accum):
            samples = s.inputs.batch(stage.stream, stage.offset + step, micro)
            loss, micro_terms, matches, n = stage_loss(s, stage.name, samples, (stage.offset + step, micro))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"stage {stage.name}, step {step}: the loss is {loss.item()} "
                                       f"({', '.join(f'{k} {v:.4g}' for k, v in micro_terms.items())}); stopped, no student "
                                       f"saved; lower the stage's learning rate or check the data")
            (loss / config.train.grad_accum).backward()
            tokens += n
            for k, v in micro_terms.items():
                terms[k] = terms.get(k, 0.0) + v / config.train.grad_accum
        s.par.average_gradients(params)
        norm = torch.nn.utils.clip_grad_norm_(params, config.train.grad_clip or float("inf"))
        if not torch.isfinite(norm):
            raise TrainingDiverged(f"stage {stage.name}, step {step}: the gradient norm is {norm.item()}; stopped before "
                                   "the update, no student saved; lower the stage's learning rate")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pairs = _record_matches(s, progress, matches, step, stage.steps)
        step_times.append(time.perf_counter() - tick)

        done = step + 1
        if early is not None and (done % config.train.early_stopping == 0 or done == stage.steps):
            early.score(done)
        if s.par.is_main and (done % config.train.log_every == 0 or done == stage.steps or step == resume_step):
            record = {
                "stage": stage.name,
                "step": step,
                **{k: round(v, 6) for k, v in terms.items()},
                "lr": scheduler.get_last_lr()[0],
                "step_s": round(step_times[-1], 4),
                "tokens_per_s": round(tokens / max(step_times[-1], 1e-9), 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
            if pairs:
                record["matched"] = pairs
                record["temperatures"] = [round(t, 4) for t in matches[0].temperatures]
                record["match_entropy"] = progress.match_entropy[-1]
                record["match_uniformity"] = progress.match_uniformity[-1]
            if early is not None and progress.early_stopping["curve"][-1][0] == done:
                record["val_accuracy"] = progress.early_stopping["curve"][-1][1]
            run.log_metrics(record)
            bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items() if k != "loss" or len(terms) == 1})
        progress.step = done
        stats["wall_time_s"] = round(time.perf_counter() - started, 2)
        stats["peak_rss_mb"] = round(peak_rss_mb(), 1)
        stats["median_step_s"] = round(statistics.median(step_times), 4)
        if done % config.train.checkpoint_every == 0 and done < stage.steps:
            ckpt.save(run, s, progress, optimizer, scheduler)
    if early is not None:
        stats["early_stopping"] = early.finish()


def _record_matches(s: Session, progress: Progress, matches, step: int, steps: int) -> list:
    """Add this step's matches to the early/late histograms; return them as (student, teacher) layers."""
    if not matches:
        return []
    half = "early" if step < steps / 2 else "late"
    t_s, t_l = len(s.heads.student_verbalizers.layers), len(s.heads.teacher_layers)
    grid = progress.heatmap.setdefault(half, [[0] * t_l for _ in range(t_s)])
    for m in matches:
        for i_s, i_l in m.pairs:
            grid[i_s][i_l] += 1
    entropies = [statistics.fmean(m.entropies[i] for m in matches) for i in range(t_s)]
    progress.match_entropy.append([round(e, 4) for e in entropies])
    progress.match_uniformity.append([_uniformity(matches, i) for i in range(t_s)])
    return matches[0].layer_pairs(s.heads.student_verbalizers.layers, s.heads.teacher_layers)


def _uniformity(matches, i: int) -> float | None:
    """How close target i's sampling was to uniform over its candidates: entropy / log(candidates), averaged
    over the micro-batches' matches (1 = uniform, 0 = always the same layer); None with a single candidate."""
    values = [m.entropies[i] / math.log(len(m.candidates[i])) for m in matches if len(m.candidates[i]) > 1]
    return round(statistics.fmean(values), 4) if values else None


def stage_loss(s: Session, stage: str, samples, where: tuple[int, int] = (0, 0)):
    """(loss, logged terms, matchings, answer tokens) of one micro-batch of `stage`.

    `where` = (step of the data stream, micro-batch): the key of a cached teacher's shard.
    """
    d, m, h = s.config.distill, s.models, s.heads
    family = m.family
    student_batch = build_batch(family, m.student_processor, samples)
    kl = KLSettings(d.kl, d.kd_temperature, m.shared_vocab, d.chunk_size)
    st_heads = Heads(h.student_verbalizers, family.final_norm(m.student), family.lm_head(m.student))

    if stage in (StageName.VERBALIZE_TEACHER, StageName.VERBALIZE_STUDENT):
        teacher_side = stage == StageName.VERBALIZE_TEACHER
        model, processor = (m.teacher, m.teacher_processor) if teacher_side else (m.student, m.student_processor)
        verbalizers = h.teacher_verbalizers if teacher_side else h.student_verbalizers
        with torch.no_grad():  # backbones are frozen in step 1
            states = answer_states(family, model, build_batch(family, processor, samples), verbalizers.layers)
        losses = verbalization_losses(states, verbalizers, family.final_norm(model), family.lm_head(model))
        return sum(losses.values()), {f"ce_layer{k}": v.item() for k, v in losses.items()}, [], len(states.targets)
    if stage == StageName.SFT:
        student = answer_states(family, m.student, student_batch, [])
        loss = sft_loss(student)
        return loss, {"ce": loss.item()}, [], len(student.targets)

    interact, hidden = stage == StageName.INTERACT, stage == StageName.HIDDEN_L2
    s_layers = h.student_verbalizers.layers if interact or hidden else []
    student = answer_states(family, m.student, student_batch, s_layers)
    if s.inputs.teacher_cache is not None:
        layer_tops, teacher_final, targets = s.inputs.teacher_cache.load(*where, s.par.rank)
        teacher_layer = layer_tops.__getitem__
    else:
        with torch.no_grad():
            t_layers = h.teacher_layers if interact or hidden else []
            teacher = answer_states(family, m.teacher, build_batch(family, m.teacher_processor, samples), t_layers)
        t_heads = Heads(h.teacher_verbalizers, family.final_norm(m.teacher), family.lm_head(m.teacher))
        teacher_final, targets = teacher.logits, teacher.targets

        def teacher_layer(i_l: int) -> torch.Tensor:
            return t_heads.verbalize(h.teacher_layers[i_l], teacher.hidden[h.teacher_layers[i_l]])

    if not torch.equal(targets, student.targets):
        raise RuntimeError("teacher and student disagree on the answer tokens (different tokenizers or a stale cache)")
    if hidden:
        uniform = match_layers(None, len(s_layers), len(h.teacher_layers), "uniform")
        pairs = uniform.layer_pairs(s_layers, h.teacher_layers)
        final = final_kd_loss(teacher_final, student, kl)
        loss, terms = hidden_l2_loss(teacher, student, pairs, h.projections, final, d.layer_weight, d.final_weight)
        terms["loss"] = loss.item()
        return loss, terms, [], len(student.targets)
    if not interact:
        loss = final_kd_loss(teacher_final, student, kl)
        return loss, {"kl_final": loss.item()}, [], len(student.targets)

    def match(candidate_kl):
        return match_layers(
            candidate_kl, len(h.student_verbalizers), len(h.teacher_layers), d.matching, s.inputs.generator,
            order=d.order, ranged=d.search_range, temperature=d.match_temperature, scale=d.temperature_scale,
            rule=d.temperature_rule,
        )

    loss, terms, matches = interaction_loss(
        teacher_layer, teacher_final, student, st_heads, kl, match,
        per_sample=d.match_per == "sample", batch_size=len(samples), reduce_kls=s.par.mean,
        layer_weight=d.layer_weight, final_weight=d.final_weight,
    )
    terms["loss"] = loss.item()
    return loss, terms, matches, len(student.targets)


def cache_teacher(config: RunConfig, out: Path) -> dict:
    """The --cache-teacher command: step 1 for the teacher, then its top-k distributions for step 2."""
    par = Parallel.from_env()
    s = build_session(config, par, cache_root=out.parent / "cache")
    run = RunDir(out / "verbalize")
    run.path.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run.config_path, dump_yaml(config))  # its checkpoints are tied to this config
    progress = Progress()
    stage = plan(config)[0]
    if not s.load_cached_teacher_verbalizers():
        run_stage(s, run, stage, progress)
        s.store_cached_teacher_verbalizers()
    teacher_eval = evaluate_model(s, s.models.teacher, s.models.teacher_processor)
    write_cache(s, out, config.distill.cache_top_k, teacher_eval)
    return teacher_eval
