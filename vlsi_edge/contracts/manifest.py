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

FORMAT_VERSION = 2  # 2: the prompt segments as text too (num_bos, *_text), for the Android app
MANIFEST = "manifest.json"


class ArtifactError(RuntimeError):
    """A missing, corrupt or tampered export file."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(root: Path, path: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256(path), "bytes": path.stat().st_size}


def write_manifest(export_dir: str | Path, manifest: dict) -> Path:
    """Write `manifest` as export_dir/manifest.json (atomically); the one writer."""
    from vlsi_edge import atomic

    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"manifest format_version {manifest.get('format_version')!r}: this writer writes {FORMAT_VERSION}")
    path = Path(export_dir) / MANIFEST
    atomic.write_json(path, manifest)
    return path


def load_manifest(export_dir: str | Path) -> dict:
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: no manifest; is {export_dir} an export directory (python -m vlsi_edge.export)?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); re-run the export") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {manifest.get('format_version') if isinstance(manifest, dict) else None!r} "
                            f"is not {FORMAT_VERSION}; re-export with this version of vlsi_edge")
    for key in ("family", "artifacts", "tokens", "tokenizer"):
        if key not in manifest:
            raise ArtifactError(f"{path}: missing key {key!r}")
    return manifest


def verify_file(export_dir: Path, entry: dict) -> Path:
    """The file's path, after checking its size and sha256 against the manifest entry."""
    path = export_dir / entry["path"]
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
