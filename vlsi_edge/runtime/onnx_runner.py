"""Greedy generation over the three ONNX graphs with onnxruntime (the host loop transformers.js also runs).

prefill: embed the prompt, put image_features at the image-token positions, run the decoder with an
empty past; decode: embed the new token, run the decoder with the returned presents as the past.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxVLM:
    def __init__(self, onnx_dir: str | Path, image_token_id: int, threads: int = 0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        onnx_dir = Path(onnx_dir)
        self.vision, self.embed, self.decoder = (
            ort.InferenceSession(str(onnx_dir / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
            for name in ("vision_encoder", "embed_tokens", "decoder_model_merged")
        )
        self.past_inputs = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self.image_token_id = image_token_id

    def generate(self, input_ids: np.ndarray, pixel_values: np.ndarray, eos_id: int, max_new_tokens: int = 40):
        """(answer token ids, prefill last-position logits) for input_ids [1, S] and pixel_values [1, 3, H, W]."""
        embeds = self.embed.run(None, {"input_ids": input_ids.astype(np.int64)})[0]
        features = self.vision.run(None, {"pixel_values": pixel_values.astype(np.float32)})[0]
        is_image = input_ids[0] == self.image_token_id
        if int(is_image.sum()) != features.shape[1]:
            raise ValueError(f"prompt has {int(is_image.sum())} image tokens but the encoder gives {features.shape[1]}")
        embeds[0, is_image] = features[0]
        past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in self.past_inputs}
        length, tokens, first = 0, [], None
        while True:
            n = embeds.shape[1]
            outputs = self.decoder.run(None, {
                "inputs_embeds": embeds,
                "attention_mask": np.ones((1, length + n), np.int64),
                "position_ids": np.arange(length, length + n, dtype=np.int64)[None],
                **past,
            })
            logits, presents = outputs[0], outputs[1:]
            past = {i.name: p for i, p in zip(self.past_inputs, presents)}
            length += n
            if first is None:
                first = logits[0, -1]
            next_id = int(logits[0, -1].argmax())
            if next_id == eos_id or len(tokens) >= max_new_tokens:
                return tokens, first
            tokens.append(next_id)
            embeds = self.embed.run(None, {"input_ids": np.array([[next_id]], np.int64)})[0]
