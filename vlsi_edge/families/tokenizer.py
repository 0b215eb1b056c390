"""Offline tokenizers: a byte-level BPE trained with `tokenizers` on the task's own text.

Byte-level BPE is what the real families ship (SmolVLM, Qwen2-VL, LLaVA-OneVision), so our
`tokenizer.json` loads in every runtime that loads theirs (transformers, transformers.js, the
ExecuTorch runner's HF tokenizer). Trained on ShapesVQA text, every task word becomes one token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Shared by every family so that teacher and student (and every family's toy models) agree on ids
# 0..len(BASE_SPECIALS)-1; family-specific tokens follow.
BASE_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def train_bpe(
    texts: Iterable[str], special_tokens: Sequence[str], vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; special tokens take the first ids, in the order given.

    Returns a transformers fast tokenizer with pad = <|endoftext|> and no automatic BOS/EOS
    (families add their own chat markers in the prompt template).
    """
    specials = list(dict.fromkeys([*BASE_SPECIALS, *special_tokens]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[s for s in specials if s not in ("<|endoftext|>",)],
    )


def family_tokenizer(family, data=None, items: int = 2000, vocab_size: int = 400,
                     extra_specials: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A family's toy tokenizer: its chat template plus `items` ShapesVQA texts as a byte-level BPE, the
    family's special tokens after `extra_specials` (which shift their ids). Tiny models, the zoo and the
    tests build theirs here, so a teacher and a student built the same way share token ids."""
    from vlsi_edge.data import ShapesConfig, corpus

    template = family.prompt("question", history=(("question", "answer"),)) + family.answer_text("answer")
    texts = [template, *corpus(items, data or ShapesConfig())]
    return train_bpe(texts, (*extra_specials, *family.special_tokens), vocab_size=vocab_size)
