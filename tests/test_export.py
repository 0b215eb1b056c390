"""`python -m vlsi_edge.export` end to end on the shipped student: programs per scheme, manifest, report, gate.

One export (android-arm64 with fewer validation items, the `exported` fixture in conftest.py) is shared; each test then
checks a contract on it: every exported part against the eager model on real ShapesVQA images
within its scheme's tolerance, KV-cache decoding against full-sequence eager logits, transformers.js on
every ONNX dtype, onnxruntime-web's WASM backend, checksums, corrupt files and refusals. (The validation report and
gate: test_export_validation.py; the stock ExecuTorch runner: test_runtime_snippets.py, in a fresh process as a user
runs it.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from vlsi_edge.config import ConfigError
from vlsi_edge.contracts.manifest import ArtifactError, load_manifest, sha256
from vlsi_edge.data import ShapesConfig
from vlsi_edge.families.parts import split_model
from vlsi_edge.deploy.pipeline import Source, resolve_source
from vlsi_edge.export import export_target, main
from vlsi_edge.deploy.targets import load_target
from vlsi_edge.families import build_batch
from vlsi_edge.runtime.executorch_runner import ExecuTorchVLM
from vlsi_edge.runtime.onnx_runner import OnnxVLM
from vlsi_edge.validate.inputs import validation_items
from vlsi_edge.families import chat_messages
from vlsi_edge.zoo import load_model

from conftest import JS_DIR, NODE, run_transformers_js

# Max relative L2 error of a part's output vs eager, by precision (measured: fp32 ~3e-5, int8 ~0.03,
# int4 ~0.09 at most on the toy student).
TOLERANCE = {"fp32": 1e-4, "fp16": 0.01, "int8": 0.05, "int4": 0.15}
ONNX_DTYPES = ["fp32", "fp16", "q8", "int8", "uint8", "int4", "q4f16", "int4_cpu"]
ARTIFACTS = ["executorch-fp32", "executorch-8da4w", *(f"onnx-{d}" for d in ONNX_DTYPES)]


def _runtime(export_dir, name):
    return (ExecuTorchVLM if name.startswith("executorch") else OnnxVLM).from_manifest(export_dir, name)


def _inputs(zoo, count=6):
    samples = validation_items(ShapesConfig(**zoo.card["data"]), count)
    return [build_batch(zoo.family, zoo.processor, [s], with_answer=False) for s in samples]


def _relative(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_export_writes_every_artifact_with_checksums_and_passes_its_gate(exported):
    result, _ = exported
    manifest = load_manifest(result.out_dir)
    assert sorted(manifest["artifacts"]) == sorted(ARTIFACTS)
    for artifact in manifest["artifacts"].values():
        for entry in artifact["files"].values():
            path = result.out_dir / entry["path"]
            assert (sha256(path), path.stat().st_size) == (entry["sha256"], entry["bytes"])
    # Everything transformers.js and the app need sits beside the programs.
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "report.json", "report.md", "report.png", "onnx/decoder_model_merged_q4.onnx"):
        assert (result.out_dir / name).is_file(), name
    assert manifest["tokens"]["image_token_count"] == manifest["prompt"]["image_tokens"] == 9
    assert manifest["image"]["size"] == 96 and manifest["max_context_len"] == 128
    assert "int(size * short / long) (truncated), plus 1 if odd" in manifest["image"]["resize_steps"]
    # 60 items cannot show an int4 program within 2 points (that is what the gate's interval is for); fp32 can.
    verdicts = {name: row["gate"]["passed"] for name, row in manifest["validation"]["artifacts"].items()}
    assert result.passed == manifest["validation"]["passed"] == all(verdicts.values())
    assert verdicts["executorch-fp32"] and verdicts["onnx-fp32"]
    assert not list(result.out_dir.parent.glob(".*staging*"))


@pytest.mark.parametrize("name", ARTIFACTS)
def test_each_exported_part_matches_eager_on_real_images(exported, name):
    result, zoo = exported
    manifest = load_manifest(result.out_dir)
    tolerance = TOLERANCE[manifest["artifacts"][name]["precision"]]
    parts = split_model(zoo.model, zoo.family, 96, max_cache_len=128)
    runtime = _runtime(result.out_dir, name)
    for batch in _inputs(zoo):
        ids, pixels = batch["input_ids"], batch["pixel_values"]
        with torch.no_grad():
            image = parts.vision_encoder(pixels[:, 0]).numpy()
            embeds = parts.token_embedding(ids).numpy()
            full = zoo.model(input_ids=ids, pixel_values=pixels, attention_mask=batch["attention_mask"]).logits[0, -1]
        got_image, got_embeds = runtime.encode_image(pixels.numpy()), runtime.embed(ids.numpy())
        assert _relative(got_image, image) < tolerance
        assert _relative(got_embeds, embeds) < tolerance
        got_embeds[0, ids[0].numpy() == runtime.image_token_id] = got_image[0]
        assert _relative(runtime.prefill(got_embeds, None), full.numpy()) < tolerance


def test_int4_cpu_decoder_is_the_builders_fused_graph_in_int8_compute(exported):
    """onnx-int4_cpu's decoder: onnxruntime-genai's builder graph (one GroupQueryAttention per layer, fused norms) with
    every MatMul in 4-bit at accuracy_level 4; the manifest says so. (Its fp32 graph equals the exported decoder:
    tests/test_any_image.py, every family.)"""
    from collections import Counter

    import onnx

    result, zoo = exported
    artifact = result.manifest["artifacts"]["onnx-int4_cpu"]
    graph = onnx.load(result.out_dir / artifact["files"]["decoder_model_merged"]["path"]).graph
    ops = Counter(node.op_type for node in graph.node)
    layers = zoo.model.config.text_config.num_hidden_layers
    assert ops["GroupQueryAttention"] == layers and ops["SkipSimplifiedLayerNormalization"] == 2 * layers
    assert ops["MatMul"] == 0 and ops["MatMulNBits"] == 5 * layers + 1  # qkv packed, o, gate+up packed, down; LM head
    levels = {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"}
    assert levels == {4}
    assert "position_ids" not in {i.name for i in graph.input}
    assert artifact["quantization"]["method"].startswith("onnxruntime-genai") and artifact["transformers_js_dtype"] is None


@pytest.mark.parametrize("name", ["executorch-fp32", "onnx-fp32"])
def test_kv_cache_decoding_equals_full_sequence_eager_logits(exported, name):
    """Each decode step's logits (cache inside the .pte / past keys in ONNX) = eager on the whole sequence."""
    result, zoo = exported
    runtime = _runtime(result.out_dir, name)
    eos = load_manifest(result.out_dir)["tokens"]["eos_ids"][0]
    for batch in _inputs(zoo, 3):
        ids = batch["input_ids"]
        out = runtime.generate(ids.numpy(), batch["pixel_values"].numpy(), eos, max_new_tokens=12)
        sequence = torch.cat([ids, torch.tensor([out.tokens])], dim=1)
        with torch.no_grad():
            full = zoo.model(input_ids=sequence, pixel_values=batch["pixel_values"]).logits[0]
        # Replay the program step by step and compare every step with the full forward.
        n = ids.shape[1]
        embeds = runtime.embed(ids.numpy())
        image = runtime.encode_image(batch["pixel_values"].numpy())
        embeds[0, ids[0].numpy() == runtime.image_token_id] = image[0]
        logits = [runtime.prefill(embeds, None)]
        for i, token in enumerate(out.tokens):
            logits.append(runtime.step(runtime.embed(np.array([[token]])), n + i, None))
        np.testing.assert_allclose(np.stack(logits), full[n - 1 :].numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype, artifact", [(None, "onnx-fp32"), ("q8", "onnx-q8"), ("int8", "onnx-int8"),
                                            ("uint8", "onnx-uint8"), ("q4", "onnx-int4")])
def test_transformers_js_runs_the_export_directory_like_our_runner(exported, node_modules, tmp_path, dtype, artifact):
    """The export directory as written (every ONNX scheme, HF files) loads in transformers.js unmodified, with no
    max_new_tokens: with Node's default dtype (None: fp32 on the CPU), the browser's (q8) and every other one."""
    result, zoo = exported
    samples = validation_items(ShapesConfig(**zoo.card["data"]), 6)
    items = []
    for i, sample in enumerate(samples):
        sample.image.save(tmp_path / f"{i}.png")
        items.append({"image": str(tmp_path / f"{i}.png"), "messages": chat_messages(sample.question)})
    (tmp_path / "items.json").write_text(json.dumps(items))
    answers = [r["answer"] for r in run_transformers_js(result.out_dir, tmp_path / "items.json", dtype)]
    ours = OnnxVLM.from_manifest(result.out_dir, artifact)
    tokenizer = zoo.family.tokenizer(zoo.processor)
    eos = load_manifest(result.out_dir)["tokens"]["eos_ids"][0]
    expected = []
    for batch in _inputs(zoo):
        out = ours.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos)
        expected.append(tokenizer.decode(out.tokens, skip_special_tokens=True).strip())
    assert answers == expected


@pytest.mark.parametrize("dtype", ["q8", "q4", "uint8", "fp16", "q4f16"])
def test_every_graph_runs_on_onnxruntime_web_wasm_like_onnxruntime(exported, node_modules, tmp_path, dtype):
    """The browser's backend: onnxruntime-web's WASM build (tests/js/wasm_run.mjs, in Node; transformers.js itself
    offers WASM only in a browser) runs each graph of the dtype on a real image and prompt, outputs within float
    tolerance of onnxruntime's CPU kernels on the same graph — its kernels cover every op we emit."""
    import onnxruntime as ort

    result, zoo = exported
    files = next(a["files"] for a in load_manifest(result.out_dir)["artifacts"].values()
                 if a.get("transformers_js_dtype") == dtype)
    batch = _inputs(zoo)[0]
    ids = batch["input_ids"].numpy().astype(np.int64)
    graphs = {g: str(result.out_dir / files[g]["path"]) for g in files}
    sessions = {g: ort.InferenceSession(path, providers=["CPUExecutionProvider"]) for g, path in graphs.items()}
    vision = sessions["vision_encoder"]
    decoder_inputs = {i.name: i for i in sessions["decoder_model_merged"].get_inputs()}
    embeds = sessions["embed_tokens"].run(None, {"input_ids": ids})[0]
    feeds = {
        "vision_encoder": {"pixel_values": batch["pixel_values"].numpy().reshape(vision.get_inputs()[0].shape)},
        "embed_tokens": {"input_ids": ids},
        "decoder_model_merged": {
            "inputs_embeds": embeds, "attention_mask": np.ones_like(ids), "position_ids": np.arange(ids.shape[1])[None],
            **{n: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for n, i in decoder_inputs.items()
               if n.startswith("past_key_values.")}},
    }
    jobs = []
    for graph, inputs in feeds.items():
        (tmp_path / graph).mkdir()
        job = {"model": graphs[graph], "out": str(tmp_path / graph), "inputs": {}}
        for name, array in inputs.items():
            array.tofile(tmp_path / graph / f"in-{name}.bin")
            job["inputs"][name] = {"type": str(array.dtype), "dims": list(array.shape),
                                   "file": str(tmp_path / graph / f"in-{name}.bin")}
        jobs.append(job)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([NODE, "wasm_run.mjs", str(tmp_path / "jobs.json")], cwd=JS_DIR, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for graph, inputs in feeds.items():
        expected = sessions[graph].run(None, inputs)
        for output, want in zip(sessions[graph].get_outputs(), expected):
            meta = json.loads((tmp_path / graph / f"{output.name}.json").read_text())
            got = np.fromfile(tmp_path / graph / f"{output.name}.bin", np.float32).reshape(meta["dims"])
            scale = float(np.abs(want).max()) or 1.0
            np.testing.assert_allclose(got, want, atol=2e-3 * scale, rtol=0, err_msg=f"{graph}: {output.name}")


def test_runners_refuse_tampered_truncated_and_corrupt_files(exported, tmp_path):
    result, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(result.out_dir, copy)
    manifest = load_manifest(copy)
    pte = copy / manifest["artifacts"]["executorch-8da4w"]["files"]["program"]["path"]
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    pte.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model-8da4w.pte: sha256 differs from manifest.json"):
        ExecuTorchVLM.from_manifest(copy, "executorch-8da4w")
    decoder = copy / manifest["artifacts"]["onnx-int8"]["files"]["decoder_model_merged"]["path"]
    decoder.write_bytes(decoder.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"decoder_model_merged_int8.onnx: 1000 bytes, but manifest.json says"):
        OnnxVLM.from_manifest(copy, "onnx-int8")
    # Without a manifest the runtimes' own errors are wrapped with the file's name.
    with pytest.raises(RuntimeError, match=r"model-8da4w.pte: ExecuTorch cannot load it"):
        pte.write_bytes(bytes(data[:5000]))
        ExecuTorchVLM(pte, 0)
    with pytest.raises(RuntimeError, match=r"decoder_model_merged_int8.onnx: onnxruntime cannot load it"):
        OnnxVLM.from_dir(copy / "onnx", 0, suffix="_int8")
    with pytest.raises(ArtifactError, match="no artifact 'onnx-bnb4'; it has: executorch-fp32"):
        OnnxVLM.from_manifest(copy, "onnx-bnb4")
    (copy / "manifest.json").write_text('{"format_version": 1, "family": ')
    with pytest.raises(ArtifactError, match=r"manifest.json: not valid JSON"):
        OnnxVLM.from_manifest(copy, "onnx-fp32")


@pytest.mark.parametrize("jobs", [1, 2])  # 2: the bad setting is found in a lowering process, the error comes back
def test_a_failed_export_leaves_the_previous_export_untouched(tmp_path, jobs):
    out = tmp_path / "exports" / "student-x"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("previous")
    zoo = load_model("student")
    target = load_target("x86_64", ["executorch.schemes=[8da4w]", "executorch.group_size=48"])
    with pytest.raises(ConfigError, match="executorch.group_size: 48 does not divide .*q_proj's input size 64"):
        export_target(Source(zoo.path, "student"), target, out, overwrite=True, jobs=jobs)
    assert (out / "manifest.json").read_text() == "previous"
    assert [p.name for p in out.parent.iterdir()] == ["student-x"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["existing export", "existing export + --overwrite of a run", "a training run",
                                  "a file", "the current folder", "inside a run", "below a file"])
def test_export_never_replaces_what_it_did_not_write(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "exports" / "student-x86_64"
    export.mkdir(parents=True)
    (export / "manifest.json").write_text("{}")
    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "student").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    out, extra, message = {
        "existing export": (export, [], "already exists; pass --overwrite"),
        "existing export + --overwrite of a run": (run, ["--overwrite"], "not an export directory"),
        "a training run": (run, [], "already exists"),
        "a file": (tmp_path / "notes.txt", ["--overwrite"], "not an export directory"),
        "the current folder": (Path("."), ["--overwrite"], "not an export directory"),
        "inside a run": (run / "export", [], "an export or a training run"),
        "below a file": (tmp_path / "notes.txt" / "x", [], "notes.txt is a file, not a folder"),
    }[case]
    before = _tree(tmp_path)
    code = main(["--target", "x86_64", "--model", "zoo:student", "--out", str(out), *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_cli_refuses_bad_input_with_the_reason(capsys, tmp_path):
    assert main(["--target", "ios"]) == 2
    assert "unknown target 'ios'; known targets: android-arm64, linux-arm64, x86_64" in capsys.readouterr().err
    assert main(["--target", "x86_64", "--model", str(tmp_path)]) == 2
    assert f"{tmp_path}/config.json: no such file" in capsys.readouterr().err
    assert main(["--target", "x86_64", "--set", "threads=four"]) == 2
    assert "threads: 'four' is not int" in capsys.readouterr().err


def test_source_defaults_to_the_latest_run_then_the_shipped_student(tmp_path):
    assert resolve_source(None, None, tmp_path).name == "student"  # no runs yet
    with pytest.raises(FileNotFoundError, match="no student/ model in this run directory"):
        resolve_source(tmp_path, None)


def test_a_context_too_short_for_the_prompt_is_refused_before_export(tmp_path, capsys):
    out = tmp_path / "short"
    code = main(["--target", "x86_64", "--model", "zoo:student", "--out", str(out), "--set", "max_context_len=40"])
    err = capsys.readouterr().err
    assert code == 2 and "max_context_len: 40 is shorter than the prompt around the question (19 tokens" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated weights", "no tokenizer", "garbage config"])
def test_a_damaged_model_directory_gets_a_sentence(tmp_path, capsys, damage):
    zoo = load_model("student")
    model = Path(shutil.copytree(zoo.path, tmp_path / "model"))
    if damage == "truncated weights":
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:4096])
    elif damage == "no tokenizer":
        (model / "tokenizer.json").unlink()
    else:
        (model / "config.json").write_text("{not json")
    out = tmp_path / "out"
    code = main(["--target", "x86_64", "--model", str(model), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(model) in err and "Traceback" not in err, err
    assert not out.exists()
