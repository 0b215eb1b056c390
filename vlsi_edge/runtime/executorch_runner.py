"""ExecuTorch's Python runtime over our .pte (methods vision_encoder / token_embedding / text_decoder).

The same program runs in ExecuTorch's stock C++ `MultimodalRunner` (what Android's `LlmModule`
wraps); this host loop exists to time each stage the same way as for onnxruntime, and to pass
Qwen2-VL's M-RoPE position ids, which the stock runner cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vlsi_edge.contracts.manifest import ArtifactError, verified_artifact
from vlsi_edge.runtime.loop import Generation, fixed_pixels, greedy


class ExecuTorchVLM:
    def __init__(self, pte: str | Path, image_token_id: int, image_grid: tuple[int, int] | None = None):
        import executorch.kernels.quantized  # noqa: F401  (registers embedding_byte / embedding_4bit)
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (llama::update_cache, custom_sdpa)
        from executorch.runtime import Runtime

        try:
            program = Runtime.get().load_program(Path(pte))
            self.vision, self.token_embedding, self.text_decoder = (
                program.load_method(name) for name in ("vision_encoder", "token_embedding", "text_decoder")
            )
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"{pte}: ExecuTorch cannot load it ({e}): a truncated or corrupt file, or an "
                               "operator this runtime lacks; re-export it") from None
        self.vision_shape = tuple(self.vision.metadata.input_tensor_meta(0).sizes())
        self.max_context_len = int(program.load_method("get_max_context_len").execute([])[0])
        self.image_token_id = image_token_id
        self.image_grid = image_grid

    @classmethod
    def from_manifest(cls, export_dir: str | Path, artifact: str) -> "ExecuTorchVLM":
        """Load an artifact (e.g. 'executorch-8da4w') after checking its file against manifest.json."""
        manifest, _, files = verified_artifact(export_dir, artifact)
        tokens = manifest["tokens"]
        grid = tokens.get("image_grid")
        return cls(files["program"], tokens["image_token_id"], tuple(grid) if grid else None)

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.vision.execute([torch.from_numpy(fixed_pixels(pixel_values, self.vision_shape))])[0].numpy()

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.token_embedding.execute([torch.as_tensor(ids, dtype=torch.long)])[0].numpy()

    def prefill(self, embeds: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
        # The KV cache lives in the program and is addressed by position: a new prompt just starts at 0.
        return self._run(embeds, 0, positions)

    def step(self, embeds: np.ndarray, cache_position: int, positions: np.ndarray | None) -> np.ndarray:
        return self._run(embeds, cache_position, positions)

    def _run(self, embeds: np.ndarray, start: int, positions: np.ndarray | None) -> np.ndarray:
        inputs = [torch.as_tensor(embeds, dtype=torch.float32), torch.arange(start, start + embeds.shape[1])]
        if positions is not None:
            inputs.append(torch.as_tensor(positions))
        return self.text_decoder.execute(inputs)[0][0, -1].numpy()

    def generate(self, input_ids: np.ndarray, pixel_values: np.ndarray, eos_id: int, max_new_tokens: int = 40) -> Generation:
        return greedy(self, input_ids, pixel_values, eos_id, max_new_tokens, self.max_context_len, self.image_grid)
