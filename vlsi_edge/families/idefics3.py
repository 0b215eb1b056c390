"""Idefics3: the architecture of SmolVLM 256M / 500M / 2.2B — the on-device family and our default.

SigLIP-style vision transformer -> pixel-shuffle connector (scale_factor^2 patches -> one token) ->
Llama decoder. Images are used at one fixed size (no tiling), so the image becomes
`(image_size / patch_size / scale_factor)^2` tokens wrapped as SmolVLM wraps its global image:
`<fake_token_around_image><global-img><image>...<image><fake_token_around_image>`.
"""

from __future__ import annotations

from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

from vlsi_edge.families.base import Family, TinySpec, siglip_dims, turn_template

SCALE_FACTOR = 2


class Idefics3Family(Family):
    name = "idefics3"
    model_class = Idefics3ForConditionalGeneration
    image_token = "<image>"
    eos_token = "<end_of_utterance>"
    special_tokens = (
        "<fake_token_around_image>",
        "<image>",
        "<global-img>",
        "<end_of_utterance>",
        *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
    )

    def tiny_config(self, tokenizer, spec: TinySpec) -> Idefics3Config:
        ids = tokenizer.convert_tokens_to_ids
        text = dict(model_type="llama", rms_norm_eps=1e-5, **self.text_dims(tokenizer, spec))
        vision = siglip_dims(spec)
        return Idefics3Config(
            text_config=text,
            vision_config=vision,
            scale_factor=SCALE_FACTOR,
            image_token_id=ids(self.image_token),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer, spec: TinySpec) -> Idefics3Processor:
        patches = spec.image_size // spec.patch_size
        image_processor = Idefics3ImageProcessorPil(
            do_image_splitting=False,
            size={"longest_edge": spec.image_size},
            max_image_size={"longest_edge": spec.image_size},
            do_resize=True,
            resample=2,  # bilinear: our renders are flat colours; Lanczos only adds ringing
        )
        return Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_len=(patches // SCALE_FACTOR) ** 2,
        )

    def prompt(self, question, history=()):
        turns = []
        for i, (user, assistant) in enumerate(history):
            image = "<image>" if i == 0 else ""
            turns.append(f"<|im_start|>User:{image}{user}{self.eos_token}\nAssistant: {assistant}{self.eos_token}\n")
        image = "" if history else "<image>"
        turns.append(f"<|im_start|>User:{image}{question}{self.eos_token}\nAssistant:")
        return "".join(turns)

    def chat_template(self):
        return turn_template(
            user="<|im_start|>User:",
            assistant="Assistant: ",
            end=f"{self.eos_token}\n",
            image=self.image_token,
            generation="Assistant:",
        )

    def language_model(self, model):
        return model.model.text_model

    def vision_modules(self, model):
        return [model.model.vision_model]

    def projector_modules(self, model):
        return [model.model.connector]
