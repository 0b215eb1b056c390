"""What every family adapter provides: the one place model-specific knowledge lives.

The distillation and export code never touch `model.model.text_model` or a chat template directly;
they ask the adapter. A new family is one file subclassing `Family` plus a line in `FAMILIES`.

Shapes used in docstrings: B batch, L sequence length, D hidden size, V vocabulary size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from vlsi_edge.config import ConfigError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value that cross-entropy skips (prompt, image and pad tokens)


@dataclass(frozen=True)
class TinySpec:
    """Dimensions of a small random model of any family (tests, the toy zoo, real-size benchmarks)."""

    text_layers: int = 2
    text_hidden: int = 64
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vision_layers: int = 1
    vision_hidden: int = 32
    vision_heads: int = 2
    vision_intermediate: int = 64
    image_size: int = 96
    patch_size: int = 16


def siglip_dims(spec: TinySpec) -> dict:
    """Vision settings of a SigLIP-style tower (Idefics3's and LLaVA-OneVision's)."""
    return dict(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_intermediate,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
    )


class Family:
    """Base adapter. Subclasses set the class attributes and implement the `_`-free abstract methods."""

    name: ClassVar[str]
    model_class: ClassVar[type[PreTrainedModel]]
    special_tokens: ClassVar[tuple[str, ...]]  # family tokens the tokenizer must hold
    image_token: ClassVar[str]  # the placeholder each image embedding replaces
    eos_token: ClassVar[str]  # ends an assistant turn; generation stops on it

    # ---- building -------------------------------------------------------------------------------
    def tiny_config(self, tokenizer: PreTrainedTokenizerBase, spec: TinySpec) -> PretrainedConfig:
        raise NotImplementedError

    def build_processor(self, tokenizer: PreTrainedTokenizerBase, spec: TinySpec) -> Any:
        """The family's processor (image processor + tokenizer), built in code with explicit settings."""
        raise NotImplementedError

    def load_processor(self, path: str | Path) -> Any:
        """The saved processor (tokenizer + image processor) of a model directory, or a ConfigError naming it."""
        try:
            return self.read_processor(path)
        except Exception as e:  # noqa: BLE001 - tokenizers, json and transformers each raise their own
            first = (str(e).strip().splitlines() or [""])[0]
            raise ConfigError(f"{path}: cannot load the processor ({type(e).__name__}: {first}); is it a complete "
                              "save_pretrained directory (tokenizer.json, processor_config.json)?") from None

    def read_processor(self, path: str | Path) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    def tokenizer(self, processor: Any) -> PreTrainedTokenizerBase:
        return processor.tokenizer

    def text_dims(self, tokenizer: PreTrainedTokenizerBase, spec: TinySpec) -> dict:
        """Decoder settings shared by every family's tiny config (each adds its own)."""
        ids = tokenizer.convert_tokens_to_ids
        return dict(
            vocab_size=len(tokenizer),
            hidden_size=spec.text_hidden,
            intermediate_size=spec.text_intermediate,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads,
            max_position_embeddings=512,
            bos_token_id=ids("<|im_start|>"),
            eos_token_id=ids(self.eos_token),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )

    # ---- prompts and inputs ---------------------------------------------------------------------
    def prompt(self, question: str, history: tuple[tuple[str, str], ...] = ()) -> str:
        """Chat text up to (and including) the assistant marker; the image goes in the first user turn."""
        raise NotImplementedError

    def answer_text(self, answer: str) -> str:
        """What follows the prompt in a training example: the answer and the end-of-turn token."""
        return f" {answer}{self.eos_token}"

    def chat_template(self) -> str:
        """Jinja template that renders `chat_messages(q, history)` to exactly `prompt(q, history)`.

        Shipped in tokenizer_config.json so that clients building prompts from messages
        (transformers, transformers.js) feed the model what it was trained on.
        """
        raise NotImplementedError

    def process(self, processor: Any, images: list, texts: list[str]) -> dict[str, torch.Tensor]:
        """Run the processor on one image per text; returns unpadded per-sample tensors (batch of 1)."""
        out = processor(images=[[im] for im in images], text=texts, return_tensors="pt")
        return dict(out)

    def image_token_count(self, processor: Any, image_size: int) -> int:
        """How many embeddings one image becomes (measured by processing a blank image)."""
        blank = Image.new("RGB", (image_size, image_size))
        ids = self.process(processor, [blank], [self.prompt("")])["input_ids"]
        return int((ids == self.tokenizer(processor).convert_tokens_to_ids(self.image_token)).sum())

    # ---- module access --------------------------------------------------------------------------
    def language_model(self, model: PreTrainedModel) -> nn.Module:
        """The decoder stack (has .layers, .norm, .embed_tokens)."""
        raise NotImplementedError

    def vision_modules(self, model: PreTrainedModel) -> list[nn.Module]:
        raise NotImplementedError

    def projector_modules(self, model: PreTrainedModel) -> list[nn.Module]:
        raise NotImplementedError

    def decoder_layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return self.language_model(model).layers

    def final_norm(self, model: PreTrainedModel) -> nn.Module:
        return self.language_model(model).norm

    def lm_head(self, model: PreTrainedModel) -> nn.Linear:
        return model.lm_head

    def embed_tokens(self, model: PreTrainedModel) -> nn.Embedding:
        return self.language_model(model).embed_tokens

    def hidden_size(self, model: PreTrainedModel) -> int:
        return self.embed_tokens(model).embedding_dim

    # ---- export ---------------------------------------------------------------------------------
    resize_rule: ClassVar[str]  # how the processor resizes, in the words of the app's JVM module (manifest "resize")

    def image_resize_rule(self, processor: Any) -> str:
        """The manifest's `image.resize`: how this processor resizes (families whose rule depends on the checkpoint
        override this)."""
        return self.resize_rule
    pixel_image_axis: ClassVar[bool] = False  # the processor's pixel_values carry an images axis [B, N, 3, H, W]
    # transformers.js' model class merges `image_features` [n, D] (no batch axis) into the embeddings (Qwen2-VL)
    flat_image_features: ClassVar[bool] = False

    def client_config(self, config: dict) -> dict:
        """config.json as an export ships it (what clients such as transformers.js read); default: as saved."""
        return config

    def client_preprocessor(self, preprocessor: dict, processor: Any) -> dict:
        """preprocessor_config.json as an export ships it; default: the image processor as saved."""
        return preprocessor

    def fixed_processor(self, processor: Any, image_size: int) -> Any:
        """A processor that turns any image into exactly the programs' fixed input at `image_size` (what an export
        ships). Families whose tower takes one size only check it; dynamic-resolution families pin it."""
        return processor

    def vision_encoder(self, model: PreTrainedModel, image_size: int) -> nn.Module:
        """Vision tower + projector for one image of a fixed size (data-dependent code made constant),
        with `example_pixel_values()`; the program `vision_encoder` of `families.parts.split_model`."""
        raise NotImplementedError(f"no export vision encoder for family {self.name}")

    def mrope_grid(self, model: PreTrainedModel, image_size: int) -> tuple[int, int] | None:
        """(rows, cols) of an image's tokens when the decoder takes M-RoPE position ids, else None."""
        return None

    def processed_image_size(self, processor: Any, batch: dict) -> int:
        """The square size the processor resized one image to, from its output for that image."""
        return int(batch["pixel_values"].shape[-1])

    def module_groups(self, model: PreTrainedModel) -> dict[str, list[nn.Module]]:
        """Disjoint groups covering every parameter: vision, projector, language (incl. lm_head)."""
        language = [self.language_model(model), self.lm_head(model)]
        return {
            "vision": self.vision_modules(model),
            "projector": self.projector_modules(model),
            "language": language,
        }

    # ---- loading --------------------------------------------------------------------------------
    def load(self, source: str | Path | PretrainedConfig, dtype: torch.dtype = torch.float32, **kwargs):
        """A model from a local directory (checked for missing weights) or from an in-code config."""
        if isinstance(source, PretrainedConfig):
            return self.model_class(source).to(dtype)
        path = Path(source)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
        try:
            model, info = self.model_class.from_pretrained(path, dtype=dtype, output_loading_info=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - safetensors, json, torch and transformers each raise their own
            first = (str(e).strip().splitlines() or [""])[0]
            raise ConfigError(f"{path}: cannot load the weights ({type(e).__name__}: {first}); is it a complete "
                              "save_pretrained directory?") from None
        missing = [k for k in info.get("missing_keys", []) if "lm_head" not in k or not _tied(model)]
        if missing:
            raise ConfigError(
                f"{path}: checkpoint is missing {len(missing)} weights (e.g. {missing[:3]}); it was probably "
                "saved by another transformers version or another family"
            )
        return model


class ChatMLFamily(Family):
    """Families whose chat template is ChatML (Qwen2-VL, LLaVA-OneVision): only the image placeholder differs."""

    image_placeholder: ClassVar[str]  # what stands for the image in the first user turn
    eos_token = "<|im_end|>"

    def prompt(self, question: str, history: tuple[tuple[str, str], ...] = ()) -> str:
        turns = []
        for i, (user, assistant) in enumerate(history):
            turns.append(f"<|im_start|>user\n{self.image_placeholder if i == 0 else ''}{user}<|im_end|>\n")
            turns.append(f"<|im_start|>assistant\n{assistant}<|im_end|>\n")
        image = "" if history else self.image_placeholder
        turns.append(f"<|im_start|>user\n{image}{question}<|im_end|>\n<|im_start|>assistant\n")
        return "".join(turns)

    def answer_text(self, answer: str) -> str:
        return f"{answer}{self.eos_token}"  # the prompt ends with a newline: no leading space

    def chat_template(self) -> str:
        return turn_template(
            user="<|im_start|>user\n",
            assistant="<|im_start|>assistant\n",
            end=f"{self.eos_token}\n",
            image=self.image_placeholder,
            generation="<|im_start|>assistant\n",
        )


def chat_messages(question: str, history: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """The conversation `Family.prompt` renders, as chat messages (the image in the first user turn)."""
    turns = [*history, (question, None)]
    messages = []
    for i, (user, assistant) in enumerate(turns):
        content = [{"type": "image"}] if i == 0 else []
        messages.append({"role": "user", "content": [*content, {"type": "text", "text": user}]})
        if assistant is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return messages


def turn_template(user: str, assistant: str, end: str, image: str, generation: str) -> str:
    """A chat template of user/assistant turns: `{user|assistant prefix}{content}{end}` each, then `generation`.

    Content is a string or a list of text / image parts; an image part becomes `image`. Literals go
    in Jinja strings (with escaped newlines) because runtimes trim newlines after block tags.
    """

    def lit(text: str) -> str:
        return "{{ '" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "' }}"

    return (
        "{% for message in messages %}"
        f"{{% if message['role'] == 'user' %}}{lit(user)}{{% else %}}{lit(assistant)}{{% endif %}}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}"
        f"{{% if part['type'] == 'image' %}}{lit(image)}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        f"{lit(end)}"
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{lit(generation)}{{% endif %}}"
    )


def check_image_size(config: PretrainedConfig, image_size: int) -> None:
    """Towers with a learned position table work at their configured size only."""
    if image_size != config.image_size:
        raise ValueError(f"image size {image_size}: this vision tower is built for {config.image_size}")


def _tied(model: PreTrainedModel) -> bool:
    return bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))
