"""Verbalizer probe: how much of the answer each decoder layer of a model already holds.

    python -m vlsi_edge.bench probe --model zoo:teacher      # or a local checkpoint / run's student

For every decoder layer k but the last (whose output the model's own final norm and lm_head read) a
verbalizer is trained exactly as VLsI's step 1 trains one (the model frozen, cross-entropy on answer
tokens of ShapesVQA train items), then each layer's *first answer token* is scored against ground truth
on ShapesVQA val, per question family; the model's own logits are the last row. The first answer token
is what decides a colour, count or yes/no answer, and the first object of a caption.

Read the plot before choosing target layers: layer matching (step 2) can only transfer a progression
that the teacher has. Accuracy that rises over many layers gives every student target a distinct teacher
layer to imitate; accuracy that jumps from chance to final in one layer leaves nothing to match but the
final logits.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vlsi_edge import atomic  # noqa: E402
from vlsi_edge.data import ShapesConfig, ShapesVQA  # noqa: E402
from vlsi_edge.distill.steps import answer_states, verbalization_losses  # noqa: E402
from vlsi_edge.distill.verbalizer import Verbalizers, verbalize  # noqa: E402
from vlsi_edge.families import build_batch  # noqa: E402
from vlsi_edge.families.sources import family_of, load_source, model_dir  # noqa: E402

log = logging.getLogger(__name__)

TRAIN_START = 3 * 2**29  # ShapesVQA train items the probe trains on: disjoint from every training stream


def first_answer_rows(sample: torch.Tensor) -> torch.Tensor:
    """[N] bool: the first answer position of each sample (positions are grouped by sample, in order)."""
    first = torch.ones_like(sample, dtype=torch.bool)
    first[1:] = sample[1:] != sample[:-1]
    return first


def probe(source: str, family_name: str | None = None, steps: int = 300, batch_size: int = 32, lr: float = 2e-3,
          items: int = 500, seed: int = 0, data: ShapesConfig | None = None) -> dict:
    """Per-layer first-answer-token accuracy (overall and per family) of `source`; see the module docstring."""
    from vlsi_edge.families import get_family

    data = data or ShapesConfig()
    if family_name is None:
        family_name = "idefics3" if source.startswith("tiny:") else family_of(_local(source)).name
    family = get_family(family_name)
    model, processor, resolved = load_source(family, source, "float32", seed=seed)
    model.eval().requires_grad_(False)
    n_layers = len(family.decoder_layers(model))
    layers = list(range(n_layers - 1))
    torch.manual_seed(seed)
    verbalizers = Verbalizers(family.hidden_size(model), layers, residual=True)
    norm, head = family.final_norm(model), family.lm_head(model)
    optimizer = torch.optim.AdamW(verbalizers.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
    train = ShapesVQA("train", size=2**31 - 1, config=data)
    start, curve = time.perf_counter(), []
    for step in range(steps):
        samples = [train[TRAIN_START + step * batch_size + i] for i in range(batch_size)]
        with torch.no_grad():
            states = answer_states(family, model, build_batch(family, processor, samples), layers)
        losses = verbalization_losses(states, verbalizers, norm, head)
        sum(losses.values()).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            curve.append({"step": step, **{str(k): round(v.item(), 4) for k, v in losses.items()}})
    train_s = time.perf_counter() - start

    val = ShapesVQA("val", config=data)
    samples = [val[i] for i in range(min(items, len(val)))]
    rows = [*layers, "final"]
    correct = {row: Counter() for row in rows}
    total, answers = Counter(), {}
    with torch.no_grad():
        for i in range(0, len(samples), 64):
            chunk = samples[i : i + 64]
            states = answer_states(family, model, build_batch(family, processor, chunk), layers)
            first = first_answer_rows(states.sample)
            targets = states.targets[first]
            predictions = {k: verbalize(verbalizers, k, states.hidden[k][first], norm, head).argmax(-1) for k in layers}
            predictions["final"] = states.logits[first].argmax(-1)
            for j, sample in enumerate(chunk):
                total[sample.family] += 1
                answers.setdefault(sample.family, Counter())[int(targets[j])] += 1
                for row in rows:
                    correct[row][sample.family] += int(predictions[row][j] == targets[j])
    families = sorted(total)
    n = sum(total.values())
    per_layer = {
        str(row): {"overall": sum(correct[row].values()) / n, **{f: correct[row][f] / total[f] for f in families}}
        for row in rows
    }
    chance = {f: max(answers[f].values()) / total[f] for f in families}
    return {
        "model": resolved,
        "family": family.name,
        "decoder_layers": n_layers,
        "probe": {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "verbalizer": "residual",
                  "train_s": round(train_s, 1), "val_items": len(samples)},
        "items_per_family": dict(total),
        "chance": chance,
        "accuracy": per_layer,
        "loss_curve": curve,
        "summary": summarise(per_layer, layers),
    }


def summarise(per_layer: dict, layers: list[int]) -> dict:
    """How gradual the progression is: for overall accuracy, the share of the chance-to-final rise that
    happens in the single largest layer-to-layer step (1.0 = one jump), and the layers where the
    overall accuracy first passes 25 / 50 / 75% of its way from the first layer to the final logits."""
    values = [per_layer[str(k)]["overall"] for k in layers] + [per_layer["final"]["overall"]]
    rise = values[-1] - values[0]
    steps = [b - a for a, b in zip(values, values[1:])]
    passes = {}
    for share in (0.25, 0.5, 0.75):
        level = values[0] + share * rise
        passes[f"{int(share * 100)}%"] = next((([*layers, "final"])[i] for i, v in enumerate(values) if v >= level), None)
    return {"rise": round(rise, 4), "largest_step_share": round(max(steps) / rise, 3) if rise > 0 else None,
            "layer_passing": passes}


def _local(source: str) -> str:
    return str(model_dir(source)) if source.startswith("zoo:") else source


def markdown(result: dict, command: str) -> str:
    families = [f for f in result["chance"]]
    lines = [f"Verbalizer probe of `{result['model']}` ({result['decoder_layers']} decoder layers): first-answer-token "
             f"accuracy on {result['probe']['val_items']} ShapesVQA val items, verbalizers trained "
             f"{result['probe']['steps']} steps.", "",
             "| layer | overall | " + " | ".join(families) + " |", "|---" * (len(families) + 2) + "|"]
    for row, acc in result["accuracy"].items():
        lines.append(f"| {row} | {acc['overall']:.3f} | " + " | ".join(f"{acc[f]:.3f}" for f in families) + " |")
    lines.append("| chance (majority first token) | | " + " | ".join(f"{result['chance'][f]:.3f}" for f in families) + " |")
    s = result["summary"]
    lines += ["", f"Rise first layer -> final: {s['rise']:+.3f}; the largest single-layer step is "
              f"{s['largest_step_share']} of it; 25/50/75% of the rise reached at layers "
              f"{s['layer_passing']['25%']} / {s['layer_passing']['50%']} / {s['layer_passing']['75%']}.",
              "", f"Measured by `{command}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict):
    rows = list(result["accuracy"])
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, family in enumerate(result["chance"]):
        line, = ax.plot(x, [result["accuracy"][r][family] for r in rows], marker=".", label=family)
        ax.axhline(result["chance"][family], color=line.get_color(), ls=":", lw=0.8)
    ax.plot(x, [result["accuracy"][r]["overall"] for r in rows], color="black", lw=2.2, marker="o", label="overall")
    ax.set_xticks(x, rows, fontsize=8)
    ax.set_xlabel("decoder layer (verbalized); final = the model's own logits")
    ax.set_ylabel("first-answer-token accuracy (val)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Verbalizer probe: {Path(result['model']).name} (dotted: chance per family)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def run(out: Path, source: str, command: str, **kwargs) -> dict:
    result = probe(source, **kwargs)
    result["command"] = command
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(result["model"]).name)
    atomic.write_json(out / f"probe-{name}.json", result)
    atomic.write_text(out / f"probe-{name}.md", markdown(result, command))
    atomic.write_figure(out / f"probe-{name}.png", plot(result))
    return result
