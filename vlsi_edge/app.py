"""`python -m vlsi_edge.app EXPORT_DIR --image IMG --question Q` — the Android app's flow on a laptop.

    python -m vlsi_edge.app exports/<run>-android-arm64 --image photo.png --question "What shape is red?"

The same steps as the app (android_demo/), with the same code where it can be:
1. the app's JVM module (android_demo/core, compiled here with javac) checks the directory against
   manifest.json (schema version, sizes, sha256), preprocesses the image and builds the prompt;
2. ExecuTorch's MultimodalRunner — the C++ runner Android's `LlmModule` wraps — prefills the text
   before the image, then the image, then generates from the rest, streaming the answer.
It prints the answer as it streams and the app's three numbers: image encode ms, time to first token,
decode tokens/s. Without a JDK (or with --python-preprocess) step 1 runs in Python instead (the
exporter's own manifest check and processor); the golden tests show both give identical inputs.
Exit status: 0, or 2 when the model directory or the image is unusable (the message names the file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlsi_edge.contracts.manifest import fixed_prompt_tokens, load_manifest
from vlsi_edge.errors import InputError, boundary, whole_number

CORE = Path(__file__).resolve().parents[1] / "android_demo" / "core"


class AppError(InputError, RuntimeError):
    """An unusable model directory or image; the message names the file."""


@dataclass
class Prepared:
    """What the app hands the runner: the program and tokenizer, the pixels, the prompt text."""

    artifact: str
    program: Path
    tokenizer: Path
    pixels: np.ndarray  # float32 [3, size, size]
    prefill_text: str
    generate_text: str
    num_bos: int
    bos_id: int
    eos_texts: list[str]
    preprocessed_by: str


def jvm_available() -> bool:
    return shutil.which("javac") is not None and (CORE / "build.sh").is_file()


def prepare_jvm(export_dir: Path, image: Path, question: str, artifact: str | None) -> Prepared:
    """Step 1 through the app's own JVM code (android_demo/core HostCli)."""
    build = subprocess.run([str(CORE / "build.sh")], capture_output=True, text=True, check=False)
    if build.returncode != 0:
        raise AppError(f"building android_demo/core failed:\n{build.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["java", "-cp", build.stdout.strip(), "org.vlsiedge.demo.core.HostCli", "prepare",
               str(export_dir), str(image), question, tmp, *([artifact] if artifact else [])]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise AppError(run.stderr.strip().removeprefix("error: "))
        app = json.loads((Path(tmp) / "app.json").read_text())
        size = app["size"]
        pixels = np.fromfile(Path(tmp) / "pixels.f32", dtype="<f4").reshape(3, size, size)
    bos_id = load_manifest(export_dir)["tokens"]["bos_id"]  # HostCli checked the manifest already
    return Prepared(app["artifact"], Path(app["program"]), Path(app["tokenizer"]), pixels, app["prefill_text"],
                    app["generate_text"], app["num_bos"], bos_id, app["eos_texts"],
                    "the app's JVM module (android_demo/core)")


def prepare_python(export_dir: Path, image: Path, question: str, artifact: str | None) -> Prepared:
    """Step 1 in Python: the exporter's manifest check and the model's own processor."""
    from vlsi_edge.data.images import open_rgb
    from vlsi_edge.deploy.app_golden import app_inputs
    from vlsi_edge.contracts.manifest import ArtifactError, verified_artifact
    from vlsi_edge.families.sources import family_of

    try:
        manifest = load_manifest(export_dir)
        names = [a for s in ("8da4w", "8da8w", "fp32") for a, e in manifest["artifacts"].items()
                 if e["runtime"] == "executorch" and e.get("stock_runner") and e["scheme"] == s]
        if not names or (artifact and artifact not in names):
            raise AppError(f"{export_dir / 'manifest.json'}: no app-runnable artifact {artifact or ''} "
                           f"(available: {', '.join(names) or 'none'})")
        name = artifact or names[0]
        _, _, files = verified_artifact(export_dir, name)  # the program and the tokenizer
    except ArtifactError as e:
        raise AppError(str(e)) from None
    if not question.strip():
        raise AppError("type a question about the image first")
    picture = open_rgb(image)  # ImageError (an InputError) names the file
    family = family_of(export_dir)
    processor = family.load_processor(export_dir)
    pixels = family.process(processor, [picture], [family.prompt(question)])["pixel_values"].numpy()
    pixels = pixels.reshape(pixels.shape[-3:]).astype(np.float32)
    inputs = app_inputs(manifest["prompt"], question)
    return Prepared(name, files["program"], export_dir / manifest["tokenizer"]["path"], pixels,
                    inputs["prefill_text"], inputs["generate_text"], inputs["num_bos"],
                    manifest["tokens"]["bos_id"], manifest["tokens"]["eos_texts"], "Python (the exporter's processor)")


def check_fits(export_dir: Path, prepared: Prepared, question: str) -> None:
    """Refuse a question that leaves no room in the program's context for an answer."""
    from tokenizers import Tokenizer

    manifest = load_manifest(export_dir)
    prompt, limit = manifest["prompt"], manifest["max_context_len"]
    asked = len(Tokenizer.from_file(str(prepared.tokenizer)).encode(question, add_special_tokens=False).ids)
    used = fixed_prompt_tokens(prompt) + asked
    if used >= limit:
        raise AppError(f"question: {asked} tokens; with the image and the prompt it needs {used} of the program's "
                       f"{limit}-token context and leaves no room for an answer; ask a shorter question")


def generate(prepared: Prepared, max_new_tokens: int, on_text=None) -> dict:
    """Step 2: ExecuTorch's multimodal runner, called as the app calls LlmModule; the answer and timings."""
    import executorch.kernels.quantized  # noqa: F401  (registers the quantized embedding kernels; the AAR links them)
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (llama::update_cache / custom_sdpa; so does the AAR)
    import torch
    from executorch.extension.llm.runner import (
        GenerationConfig,
        MultimodalRunner,
        make_image_input,
        make_text_input,
        make_token_input,
    )

    runner = MultimodalRunner(str(prepared.program), str(prepared.tokenizer))
    pieces: list[tuple[float, str]] = []
    stops = [t for t in prepared.eos_texts if t]
    ended = False

    def on_token(text: str) -> None:
        nonlocal ended
        pieces.append((time.perf_counter(), text))
        ended = ended or text in stops  # the runner streams the end-of-answer token too; never show it
        if on_text is not None and not ended:
            on_text(text)

    start = time.perf_counter()
    bos = [make_token_input([prepared.bos_id] * prepared.num_bos)] if prepared.num_bos else []
    runner.prefill([*bos, make_text_input(prepared.prefill_text)])  # LlmModule.prefillPrompt
    image_start = time.perf_counter()
    runner.prefill([make_image_input(torch.from_numpy(prepared.pixels))])  # LlmModule.prefillImages(float[])
    image_end = time.perf_counter()
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens)
    runner.generate([make_text_input(prepared.generate_text)], config, on_token)  # LlmModule.generate
    text = "".join(t for _, t in pieces)
    for stop in stops:
        text = text.split(stop)[0]
    times = [t for t, _ in pieces]
    return {"answer": text.strip(), "tokens": len(pieces), "image_encode_ms": (image_end - image_start) * 1e3,
            "first_token_ms": (times[0] - start) * 1e3 if times else float("nan"),
            "decode_tokens_per_s": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")}


@boundary
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlsi_edge.app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path, help="an export directory (python -m vlsi_edge.export)")
    parser.add_argument("--image", type=Path, required=True, help="a PNG or JPEG")
    parser.add_argument("--question", required=True)
    parser.add_argument("--artifact", help="e.g. executorch-8da8w (default: the smallest the app can run)")
    parser.add_argument("--max-new-tokens", type=whole_number(1), default=64, help="answer length cap (>= 1)")
    parser.add_argument("--python-preprocess", action="store_true", help="skip the JVM module (step 1 in Python)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (no streaming)")
    args = parser.parse_args(argv)

    use_jvm = jvm_available() and not args.python_preprocess
    prepare = prepare_jvm if use_jvm else prepare_python
    prepared = prepare(args.export_dir, args.image, args.question, args.artifact)
    check_fits(args.export_dir, prepared, args.question)
    if not args.json:
        print(f"{prepared.artifact} ({prepared.program.name}); inputs prepared by {prepared.preprocessed_by}",
              file=sys.stderr)
    # The C++ runner printf()s every token and its stats to stdout: send those to stderr, keep stdout ours.
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        stream = None if args.json else (lambda text: os.write(stdout, text.encode()))
        result = generate(prepared, args.max_new_tokens, stream)
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)
    result = {"artifact": prepared.artifact, "preprocessed_by": prepared.preprocessed_by, **result}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"\n\nanswer: {result['answer']}\nencode {result['image_encode_ms']:.1f} ms · first token "
              f"{result['first_token_ms']:.1f} ms · {result['decode_tokens_per_s']:.1f} tok/s ({result['tokens']} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
