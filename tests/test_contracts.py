"""The manifest contract: one version constant shared with the Android app, one writer, a reader that names what is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vlsi_edge.contracts.manifest import FORMAT_VERSION, MANIFEST, ArtifactError, load_manifest, write_manifest

JAVA = Path(__file__).resolve().parents[1] / "android_demo/core/src/main/java/org/vlsiedge/demo/core/Manifest.java"


def minimal() -> dict:
    return {
        "format_version": FORMAT_VERSION, "family": "idefics3", "prompt": {}, "max_context_len": 64,
        "image": {"size": 96, "resize": "longest_edge_then_square", "mean": [0.5] * 3, "std": [0.5] * 3},
        "tokens": {"image_token_id": 5, "image_token_count": 9, "eos_ids": [2]},
        "tokenizer": {"path": "tokenizer.json", "sha256": "0" * 64, "bytes": 1},
        "artifacts": {"onnx-fp32": {"runtime": "onnx", "scheme": "fp32", "files": {}}},
    }


def test_the_android_reader_checks_the_version_the_python_writer_writes():
    declared = re.search(r"public static final int FORMAT_VERSION = (\d+);", JAVA.read_text())
    assert declared and int(declared.group(1)) == FORMAT_VERSION


def test_written_manifests_load_back(tmp_path):
    write_manifest(tmp_path, minimal())
    assert load_manifest(tmp_path) == minimal()


@pytest.mark.parametrize("section, key", [("", "artifacts"), ("image", "size"), ("tokens", "eos_ids")])
def test_a_missing_key_is_named_by_writer_and_reader(tmp_path, section, key):
    manifest = minimal()
    del (manifest[section] if section else manifest)[key]
    dotted = f"{section}.{key}" if section else key
    with pytest.raises(ValueError, match=re.escape(dotted)):
        write_manifest(tmp_path, manifest)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))  # written by something else
    with pytest.raises(ArtifactError, match=re.escape(repr(dotted))):
        load_manifest(tmp_path)


def test_an_artifact_without_files_is_refused(tmp_path):
    manifest = minimal()
    del manifest["artifacts"]["onnx-fp32"]["files"]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="artifact 'onnx-fp32' needs runtime, scheme and files"):
        load_manifest(tmp_path)


def test_another_version_is_refused(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({**minimal(), "format_version": FORMAT_VERSION - 1}))
    with pytest.raises(ArtifactError, match=f"format_version {FORMAT_VERSION - 1} is not {FORMAT_VERSION}"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("bad", ["../outside/x.pte", "/etc/passwd", "onnx/../../x", "./model.pte", "a//b", "C:/x",
                                 "onnx\\\\x.onnx", ""])
def test_file_paths_must_stay_inside_the_export(tmp_path, bad):
    manifest = minimal()
    manifest["artifacts"]["onnx-fp32"]["files"] = {"program": {"path": bad, "sha256": "0" * 64, "bytes": 1}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="file path"):
        load_manifest(tmp_path)


def test_a_link_out_of_the_export_is_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.pte").symlink_to(outside)
    manifest = minimal()
    manifest["artifacts"]["onnx-fp32"]["files"] = {"program": {"path": "model.pte", "sha256": "0" * 64, "bytes": 1}}
    (export / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="leads outside the export directory"):
        load_manifest(export)
