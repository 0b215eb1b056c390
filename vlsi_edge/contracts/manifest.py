"""`manifest.json`: the one file the app and the host runners read to find and trust an export.

It names every artifact (runtime, scheme, files with sha256 and size) and says how to feed the model
(image size and normalisation, prompt template and token ids, image token id and count, max lengths,
tokenizer) plus the validation results. Runners look files up here, never by name, and refuse a file
whose size or sha256 differ from the manifest's — a truncated copy to a phone or a corrupted download
fails with the file's name instead of producing nonsense.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TypedDict

from vlsi_edge.errors import InputError

# 2: the prompt segments as text too (num_bos, *_text), for the Android app. The Android app's reader
# (android_demo/core Manifest.FORMAT_VERSION) must say the same: tests/test_contracts.py checks it.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"


# ---- the schema (docs/EXPORT.md describes every key) ----------------------------------------------
class FileEntry(TypedDict):
    path: str  # relative to the export directory, '/'-separated
    sha256: str
    bytes: int


class Artifact(TypedDict, total=False):
    runtime: str  # 'executorch' | 'onnx'
    scheme: str  # 'fp32' | '8da8w' | '8da4w' | 'int8' | 'int4'
    precision: str  # 'fp32' | 'int8' | 'int4' (what the gate's threshold is keyed by)
    backend: str  # executorch: 'xnnpack'
    quantization: dict | None
    files: dict[str, FileEntry]  # role ('program', 'vision_encoder', ...) -> file
    methods: list[str]  # executorch: the program's methods
    stock_runner: bool  # executorch: ExecuTorch's MultimodalRunner can run it unmodified
    llm_ops: bool  # executorch: the decoder calls llama::update_cache / custom_sdpa (the runtime must link them)
    transformers_js_dtype: str | None  # onnx: the dtype name transformers.js loads it by (None: onnxruntime CPU only)


class Image(TypedDict):
    size: int
    channels: str
    layout: str
    resize: str  # Family.image_resize_rule
    resize_steps: str  # the rule spelled out: sizes, rounding, filter (RESIZE_STEPS)
    resample: str | None
    rescale_factor: float
    mean: list[float]
    std: list[float]


class Tokens(TypedDict):
    image_token_id: int
    image_token_count: int
    image_grid: list[int] | None  # M-RoPE image-token (rows, cols); None for cache-position decoders
    bos_id: int | None
    eos_ids: list[int]
    eos_texts: list[str]
    pad_id: int | None
    vocab_size: int


class Manifest(TypedDict, total=False):
    format_version: int
    family: str
    model: dict  # source, name
    target: str
    created: str
    versions: dict[str, str]
    image: Image
    prompt: dict  # template, image_placeholder, token segments and their texts, num_bos
    tokens: Tokens
    max_context_len: int
    max_seq_len: int
    tokenizer: FileEntry
    artifacts: dict[str, Artifact]
    export_seconds: dict[str, float]
    app_golden: str  # stock-runner families: the app's golden inputs index
    validation: dict  # report, passed, per-artifact results (after validation)


# Keys a reader may rely on, per section; `load_manifest` refuses a manifest without them.
REQUIRED = {
    "": ("format_version", "family", "image", "prompt", "tokens", "max_context_len", "tokenizer", "artifacts"),
    "image": ("size", "resize", "mean", "std"),
    "tokens": ("image_token_id", "image_token_count", "eos_ids"),
}


class ArtifactError(InputError, RuntimeError):
    """A missing, corrupt or tampered export file."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(root: Path, path: Path) -> FileEntry:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256(path), "bytes": path.stat().st_size}


def fixed_prompt_tokens(prompt: dict) -> int:
    """Tokens of the manifest's prompt around the question: segments plus the image's embeddings."""
    return (len(prompt["before_image"]) + prompt["image_tokens"] + len(prompt["after_image"])
            + len(prompt["after_question"]))


def write_manifest(export_dir: str | Path, manifest: Manifest) -> Path:
    """Write `manifest` as export_dir/manifest.json (atomically); the one writer. It must hold what
    `load_manifest` requires, so nothing is written that the readers would refuse."""
    from vlsi_edge import atomic

    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"manifest format_version {manifest.get('format_version')!r}: this writer writes {FORMAT_VERSION}")
    missing = [f"{section + '.' if section else ''}{key}" for section, keys in REQUIRED.items()
               for key in keys if key not in (manifest.get(section, {}) if section else manifest)]
    if missing:
        raise ValueError(f"manifest is missing {', '.join(missing)}")
    path = Path(export_dir) / MANIFEST
    atomic.write_json(path, manifest)
    return path


def load_manifest(export_dir: str | Path) -> Manifest:
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: no manifest; is {export_dir} an export directory (python -m vlsi_edge.export)?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); re-run the export") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {manifest.get('format_version') if isinstance(manifest, dict) else None!r} "
                            f"is not {FORMAT_VERSION}; re-export with this version of vlsi_edge")
    for section, keys in REQUIRED.items():
        where = manifest[section] if section else manifest
        if not isinstance(where, dict):
            raise ArtifactError(f"{path}: {section!r} is not a mapping")
        for key in keys:
            if key not in where:
                raise ArtifactError(f"{path}: missing key {(section + '.' if section else '') + key!r}")
    for name, artifact in manifest["artifacts"].items():
        if not isinstance(artifact, dict) or not {"runtime", "scheme", "files"} <= set(artifact):
            raise ArtifactError(f"{path}: artifact {name!r} needs runtime, scheme and files")
        for entry in artifact["files"].values():
            contained(export_dir, entry.get("path") if isinstance(entry, dict) else None)
    contained(export_dir, manifest["tokenizer"].get("path") if isinstance(manifest["tokenizer"], dict) else None)
    if "app_golden" in manifest:
        contained(export_dir, manifest["app_golden"])
    return manifest


def contained(export_dir: str | Path, relative) -> Path:
    """export_dir / relative, refusing anything but a normalised relative path that stays inside export_dir
    (no absolute paths, no '..', no backslashes, no link that leads out)."""
    export_dir = Path(export_dir)
    where = export_dir / MANIFEST
    if not isinstance(relative, str) or not relative:
        raise ArtifactError(f"{where}: a file path is {relative!r}; expected a path relative to the export directory")
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise ArtifactError(f"{where}: file path {relative!r} is not a normalised path inside the export directory")
    path = export_dir / relative
    if not path.resolve().is_relative_to(export_dir.resolve()):
        raise ArtifactError(f"{where}: file path {relative!r} leads outside the export directory (a link?)")
    return path


def verify_file(export_dir: Path, entry: dict) -> Path:
    """The file's path, after checking its place, size and sha256 against the manifest entry."""
    path = contained(export_dir, entry.get("path"))
    if not path.is_file():
        raise ArtifactError(f"{path}: listed in {MANIFEST} but missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ArtifactError(f"{path}: {size} bytes, but {MANIFEST} says {entry['bytes']} (truncated or replaced?)")
    if sha256(path) != entry["sha256"]:
        raise ArtifactError(f"{path}: sha256 differs from {MANIFEST} (corrupt or modified); re-export or re-copy it")
    return path


def verified_artifact(export_dir: str | Path, name: str) -> tuple[dict, dict, dict[str, Path]]:
    """(manifest, artifact entry, verified file paths by role) for artifact `name`, e.g. 'executorch-8da4w'."""
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)
    artifacts = manifest["artifacts"]
    if name not in artifacts:
        raise ArtifactError(f"{export_dir / MANIFEST}: no artifact {name!r}; it has: {', '.join(artifacts)}")
    artifact = artifacts[name]
    files = {role: verify_file(export_dir, entry) for role, entry in artifact["files"].items()}
    verify_file(export_dir, manifest["tokenizer"])
    return manifest, artifact, files
