"""Shared fixtures: tiny tokenizers and models of every family, built in code (no download)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that reaches for the hub fails instead of hanging

from vlsi_edge.data import ShapesConfig, ShapesVQA, corpus  # noqa: E402
from vlsi_edge.families import FAMILIES, TinySpec, get_family, train_bpe  # noqa: E402

TINY = TinySpec(image_size=64, patch_size=16)


def tiny_tokenizer(family_name: str, extra_specials: tuple[str, ...] = ()):
    family = get_family(family_name)
    template = family.prompt("q", history=(("q", "a"),)) + family.answer_text("a")
    texts = [template, *corpus(2000, ShapesConfig())]
    return train_bpe(texts, (*extra_specials, *family.special_tokens), vocab_size=400)


@pytest.fixture(scope="session")
def shapes_samples():
    data = ShapesVQA("test", config=ShapesConfig(image_size=64))
    return [data[i] for i in range(8)]


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def tiny(request):
    """(family, tokenizer, processor, model) of a tiny random model of each family."""
    import torch

    family = get_family(request.param)
    tokenizer = tiny_tokenizer(request.param)
    torch.manual_seed(0)
    model = family.load(family.tiny_config(tokenizer, TINY)).eval()
    return family, tokenizer, family.build_processor(tokenizer, TINY), model
