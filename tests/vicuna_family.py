"""A fourth family in one file: LLaVA-1.5's Vicuna chat format on the LLaVA architecture.

What adding a family takes (tests/test_new_family.py registers it and runs it through batching, training,
the program split, the exported ONNX graphs and the manifest): class attributes, a tiny config and a
processor, the prompt and chat template, where the modules are, and the fixed-size vision encoder.
"""

from __future__ import annotations

from transformers import LlavaConfig, LlavaProcessor
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from vlsi_edge.families.base import Family, TinySpec, siglip_dims
from vlsi_edge.families.llava import LlavaFamily


class VicunaLlavaFamily(LlavaFamily):
    """LLaVA's architecture (model class, module access, export vision encoder inherited), Vicuna's chat."""

    name = "vicuna_llava"
    eos_token = "</s>"
    special_tokens = ("<image>", "</s>")

    def tiny_config(self, tokenizer, spec: TinySpec) -> LlavaConfig:
        return LlavaConfig(
            text_config=dict(model_type="llama", **self.text_dims(tokenizer, spec)),
            vision_config=dict(model_type="siglip_vision_model", **siglip_dims(spec)),
            image_token_index=tokenizer.convert_tokens_to_ids(self.image_token),
            image_seq_length=(spec.image_size // spec.patch_size) ** 2,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer, spec: TinySpec) -> LlavaProcessor:
        size = {"height": spec.image_size, "width": spec.image_size}
        image_processor = LlavaImageProcessorPil(size=size, crop_size=size, do_center_crop=False,
                                                 image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2)
        return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=spec.patch_size,
                              vision_feature_select_strategy="full", image_token=self.image_token)

    answer_text = Family.answer_text  # ' {answer}</s>' (ChatML's has no leading space)

    def prompt(self, question, history=()):
        turns = [f"USER: {'<image>' if i == 0 else ''}{user} ASSISTANT: {answer}</s>" for i, (user, answer) in enumerate(history)]
        return "".join(turns) + f"USER: {'' if history else '<image>'}{question} ASSISTANT:"

    def chat_template(self):
        return (
            "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for part in m['content'] %}"
            "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
            "{% else %} ASSISTANT: {{ m['content'][0]['text'] }}</s>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
        )
