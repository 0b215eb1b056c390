"""The export's image preprocessing in Python (transformers) against transformers.js (Node), on resized images.

    python -m vlsi_edge.bench preprocess --export exports/student-android-arm64 [--items 100] [--dtype fp32]

transformers.js resizes with its own resampler (sharp's affine transform in Node, the canvas in a browser), not
Pillow's antialiased one, so an image that is not already the model's size reaches the model as other pixels.
This measures how far apart they are and what it does to answers: the first `items` ShapesVQA test items
(the export's validation world), each resized to a width and height drawn once from [size/2, 2*size]
(numpy seed 0, fixed before any result was seen: down- and upsampling, never square by design), go through

  - the export's Python processor -> our ONNX runner (`OnnxVLM`, the export's `dtype` graphs), and
  - tests/js/generate.mjs (AutoProcessor + AutoModelForImageTextToText on the same graphs), which also writes
    the pixels it fed the model; our runner on those pixels must give transformers.js' answer (a control).

Reported: max and mean absolute pixel difference (in the normalized units the model sees, and in 8-bit
levels), answer agreement between the two paths, and each path's accuracy. Needs Node and `npm ci` in tests/js.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from vlsi_edge import atomic
from vlsi_edge.contracts.manifest import load_manifest
from vlsi_edge.data import ShapesConfig, ShapesVQA, VQASample
from vlsi_edge.data.scoring import exact_match, normalize_answer, score
from vlsi_edge.config import ConfigError
from vlsi_edge.families import build_batch, chat_messages
from vlsi_edge.families.sources import family_of
from vlsi_edge.runtime import OnnxVLM
from vlsi_edge.validate.stats import wilson

log = logging.getLogger(__name__)
JS_DIR = Path(__file__).resolve().parents[2] / "tests" / "js"


def resized_items(data: ShapesConfig, size: int, items: int) -> list[VQASample]:
    """The first `items` test items, each resized to its own (w, h) in [size/2, 2*size] (bicubic, seed 0)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    split = ShapesVQA("test", config=data)
    if items > len(split):
        raise ConfigError(f"--items {items}: the ShapesVQA test split has {len(split)} items")
    out = []
    for i in range(items):
        w, h = (int(v) for v in rng.integers(size // 2, 2 * size + 1, size=2))
        sample = split[i]
        out.append(VQASample(sample.image.resize((w, h), Image.BICUBIC), sample.question, sample.answer))
    return out


def run(out_dir: Path, export_dir: Path, items: int, dtype: str, command: str, js_dir: Path = JS_DIR) -> dict:
    node = shutil.which("node")
    if node is None or not (js_dir / "node_modules").is_dir():
        raise ConfigError(f"transformers.js is not installed: need `node` and `npm ci` in {js_dir}")
    manifest = load_manifest(export_dir)
    artifact = next((name for name, a in manifest["artifacts"].items() if a.get("transformers_js_dtype") == dtype), None)
    if artifact is None:
        raise ConfigError(f"--dtype {dtype}: {export_dir} has no ONNX artifact of that transformers.js dtype")
    family = family_of(export_dir)
    processor = family.load_processor(export_dir)
    size = manifest["image"]["size"]
    data = ShapesConfig(**manifest["data"]) if "data" in manifest else ShapesConfig(image_size=size)
    samples = resized_items(data, size, items)
    runner = OnnxVLM.from_manifest(export_dir, artifact)
    eos = manifest["tokens"]["eos_ids"][0]
    tokenizer = family.tokenizer(processor)
    # normalized units -> 8-bit levels (exact when every channel has the same std, as SmolVLM's 0.5)
    levels = float(np.mean(manifest["image"]["std"])) / manifest["image"]["rescale_factor"]
    max_new_tokens = json.loads((export_dir / "generation_config.json").read_text())["max_new_tokens"]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        listing = []
        for i, sample in enumerate(samples):
            sample.image.save(tmp / f"{i}.png")
            listing.append({"image": str(tmp / f"{i}.png"), "messages": chat_messages(sample.question)})
        (tmp / "items.json").write_text(json.dumps(listing))
        proc = subprocess.run([node, "generate.mjs", str(export_dir.resolve()), str(tmp / "items.json"), dtype, str(tmp)],
                              cwd=js_dir, capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"transformers.js failed: {proc.stderr[-2000:]}")
        js = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = []
        for i, sample in enumerate(samples):
            batch = build_batch(family, processor, [sample], with_answer=False)
            ours = batch["pixel_values"].numpy().reshape(-1)
            theirs = np.fromfile(tmp / f"{i}.f32", np.float32)
            if theirs.size != ours.size:
                raise RuntimeError(f"item {i}: transformers.js made {theirs.size} pixel values, Python {ours.size}")
            diff = np.abs(ours - theirs)
            ids = batch["input_ids"].numpy()
            python = runner.generate(ids, ours, eos, max_new_tokens)
            control = runner.generate(ids, theirs, eos, max_new_tokens)
            rows.append({
                "size": list(sample.image.size),
                "max_diff": float(diff.max()),
                "mean_diff": float(diff.mean()),
                "max_levels": float(diff.max()) * levels,
                "python_answer": tokenizer.decode(python.tokens, skip_special_tokens=True).strip(),
                "js_answer": js[i]["answer"],
                "control_answer": tokenizer.decode(control.tokens, skip_special_tokens=True).strip(),
            })
    python_answers = [r["python_answer"] for r in rows]
    js_answers = [r["js_answer"] for r in rows]
    right = [(exact_match(a, x.answer), exact_match(b, x.answer)) for a, b, x in zip(python_answers, js_answers, samples)]
    equal = sum(normalize_answer(a) == normalize_answer(b) for a, b in zip(python_answers, js_answers))
    result = {
        "export": str(export_dir), "family": family.name, "artifact": artifact, "dtype": dtype, "items": items,
        "image_size": size, "command": command,
        "max_diff": max(r["max_diff"] for r in rows), "median_max_diff": float(np.median([r["max_diff"] for r in rows])),
        "mean_diff": float(np.mean([r["mean_diff"] for r in rows])),
        "max_levels": max(r["max_levels"] for r in rows),
        "median_max_levels": float(np.median([r["max_levels"] for r in rows])),
        "agreement": equal / items, "agreement_95": wilson(equal, items),
        "only_python_right": sum(a and not b for a, b in right), "only_js_right": sum(b and not a for a, b in right),
        "control_equal": sum(r["control_answer"] == r["js_answer"] for r in rows),
        "python_accuracy": score(python_answers, samples)["accuracy"],
        "js_accuracy": score(js_answers, samples)["accuracy"],
        "rows": rows,
    }
    atomic.write_json(out_dir / "preprocess.json", result)
    atomic.write_text(out_dir / "preprocess.md", markdown(result))
    return result


def markdown(r: dict) -> str:
    n = r["items"]
    return "\n".join([
        f"# Python processor vs transformers.js on {n} resized images ({r['family']}, {r['artifact']})",
        "",
        f"Command: `{r['command']}`",
        "",
        "| | value |",
        "|---|---|",
        f"| pixel difference, max over items (normalized units; 8-bit levels) | {r['max_diff']:.3f}; {r['max_levels']:.0f} |",
        f"| pixel difference, median of per-item max | {r['median_max_diff']:.3f}; {r['median_max_levels']:.0f} |",
        f"| pixel difference, mean | {r['mean_diff']:.4f} |",
        f"| answers equal (Python pixels vs transformers.js) | {r['agreement']:.3f} ({round(r['agreement'] * n)}/{n}; "
        f"95% {r['agreement_95'][0]:.3f}-{r['agreement_95'][1]:.3f}) |",
        f"| accuracy: Python processor / transformers.js | {r['python_accuracy']:.3f} / {r['js_accuracy']:.3f} "
        f"(right only with Python: {r['only_python_right']}, only with transformers.js: {r['only_js_right']}) |",
        f"| control: our runner on transformers.js' pixels gives its answer | {r['control_equal']}/{n} |",
        "",
    ])
