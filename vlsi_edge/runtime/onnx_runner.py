"""onnxruntime over the three ONNX graphs (the calls transformers.js makes too), for the host loop.

The decoder takes the past keys/values as inputs and returns the presents: prefill starts from an
empty past, each decode step feeds back what the previous call returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from vlsi_edge.contracts.manifest import ArtifactError, verified_artifact
from vlsi_edge.runtime.loop import Generation, fixed_pixels, greedy


class OnnxVLM:
    def __init__(self, paths: dict[str, str | Path], image_token_id: int, threads: int = 0,
                 image_grid: tuple[int, int] | None = None):
        """paths: the vision_encoder / embed_tokens / decoder_model_merged graphs (any scheme's files)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.vision, self.embed_tokens, self.decoder = (
            _session(paths[name], options) for name in ("vision_encoder", "embed_tokens", "decoder_model_merged")
        )
        self.past_inputs = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        # int4_cpu's decoder from onnxruntime-genai's builder takes no position_ids (deploy/onnx_fusion.py)
        self.takes_positions = any(i.name == "position_ids" for i in self.decoder.get_inputs())
        self.vision_shape = self.vision.get_inputs()[0].shape
        self.image_token_id = image_token_id
        self.image_grid = image_grid
        self._past: dict[str, np.ndarray] = {}

    @classmethod
    def from_manifest(cls, export_dir: str | Path, artifact: str, threads: int = 0) -> "OnnxVLM":
        """Load an artifact (e.g. 'onnx-int8') after checking its files against manifest.json."""
        manifest, _, files = verified_artifact(export_dir, artifact)
        tokens = manifest["tokens"]
        grid = tokens.get("image_grid")
        return cls(files, tokens["image_token_id"], threads, tuple(grid) if grid else None)

    @classmethod
    def from_dir(cls, onnx_dir: str | Path, image_token_id: int, suffix: str = "", **kwargs) -> "OnnxVLM":
        """Graphs by their hub file names (onnx/vision_encoder{suffix}.onnx, ...), without a manifest."""
        names = ("vision_encoder", "embed_tokens", "decoder_model_merged")
        return cls({n: Path(onnx_dir) / f"{n}{suffix}.onnx" for n in names}, image_token_id, **kwargs)

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        # One fixed input shape per export (Idefics3: the processor's [1, 1, 3, H, W]).
        features = self.vision.run(None, {"pixel_values": fixed_pixels(pixel_values, self.vision_shape)})[0]
        return features.reshape(1, -1, features.shape[-1])  # Qwen2-VL's graph gives [n, D]

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.embed_tokens.run(None, {"input_ids": ids.astype(np.int64)})[0]

    def prefill(self, embeds: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
        self._past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in self.past_inputs}
        return self._run(embeds, 0, positions)

    def step(self, embeds: np.ndarray, cache_position: int, positions: np.ndarray | None) -> np.ndarray:
        return self._run(embeds, cache_position, positions)

    def _run(self, embeds: np.ndarray, start: int, positions: np.ndarray | None) -> np.ndarray:
        n = embeds.shape[1]
        if positions is None:
            positions = np.arange(start, start + n, dtype=np.int64)[None]
        feeds = {"inputs_embeds": embeds.astype(np.float32), "attention_mask": np.ones((1, start + n), np.int64),
                 **self._past}
        if self.takes_positions:
            feeds["position_ids"] = positions
        logits, *presents = self.decoder.run(None, feeds)
        self._past = {i.name: p for i, p in zip(self.past_inputs, presents)}
        return logits[0, -1]

    def generate(self, input_ids: np.ndarray, pixel_values: np.ndarray, eos_id: int, max_new_tokens: int = 40) -> Generation:
        return greedy(self, input_ids, pixel_values, eos_id, max_new_tokens, image_grid=self.image_grid)


def _session(path: str | Path, options: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / NoSuchFile types
        raise ArtifactError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e}); "
                           "truncated or corrupt? re-export it") from None
