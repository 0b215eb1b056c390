"""Golden files for the Android app's JVM module (`android_demo/core`): exactly what the exporter feeds
the programs, for a few images and questions.

Per item: the image (PNG, lossless), the question, the processor's pixel tensor (float32 little-endian,
CHW: what the vision program takes and what the app hands to `LlmModule.prefillImages`), and the prompt
as the app sends it — text before the image (`prefillPrompt`), text after it (`generate`), and the
token ids that text must become. The app's JVM module must reproduce the pixels bit for bit and the
text exactly (android_demo/core's GoldenTest); the host flow (`python -m vlsi_edge.app`) checks the
runner's tokenizer turns the text into those ids.

Items: a few ShapesVQA test images at the program's size, and resized copies of one of them
(landscape downscale, portrait upscale) so the resize path is covered too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from vlsi_edge import atomic
from vlsi_edge.data import ShapesConfig, ShapesVQA
from vlsi_edge.families import Family

GOLDEN_DIR = "app_golden"
GOLDEN_INDEX = "golden.json"
RESIZED = ((150, 112), (80, 130))  # (width, height) copies of the first item: both resize passes run


def app_inputs(prompt: dict, question: str) -> dict:
    """The app's prompt for `question`: what it prefills before the image and generates from after it."""
    return {"prefill_text": prompt["before_image_text"],
            "generate_text": prompt["after_image_text"] + question + prompt["after_question_text"],
            "num_bos": prompt["num_bos"]}


def write_app_golden(family: Family, processor, prompt: dict, data: ShapesConfig, out_dir: Path,
                     items: int = 3) -> Path:
    """Write `out_dir/app_golden/` (images, pixels, prompts, golden.json); returns the directory."""
    tokenizer = family.tokenizer(processor)
    out = Path(out_dir) / GOLDEN_DIR
    out.mkdir(parents=True, exist_ok=True)
    samples = [(s.image, s.question) for s in ShapesVQA("test", size=items, config=data)]
    first, question = samples[0]
    samples += [(first.resize(size, Image.BICUBIC), question) for size in RESIZED]

    index = []
    for i, (image, question) in enumerate(samples):
        name = f"item{i}"
        image.convert("RGB").save(out / f"{name}.png")
        batch = family.process(processor, [image], [family.prompt(question)])
        pixels = batch["pixel_values"].numpy().astype("<f4")
        pixels = pixels.reshape(pixels.shape[-3:])  # [3, H, W]: Idefics3 gives [1, 1, 3, H, W], LLaVA [1, 3, H, W]
        (out / f"{name}.f32").write_bytes(pixels.tobytes())
        inputs = app_inputs(prompt, question)
        question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
        index.append({
            "name": name, "image": f"{name}.png", "width": image.width, "height": image.height,
            "question": question, "pixels": f"{name}.f32", "shape": list(pixels.shape),
            "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
            **inputs,
            "prefill_ids": prompt["before_image"][prompt["num_bos"]:],
            "generate_ids": prompt["after_image"] + question_ids + prompt["after_question"],
        })
    atomic.write_json(out / GOLDEN_INDEX, {"format_version": 1, "items": index})
    return out
