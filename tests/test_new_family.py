"""Adding a family is one file plus one registry line: tests/vicuna_family.py (LLaVA-1.5's Vicuna chat
format), registered here, runs through the family checks, the recipe, the program split, the ONNX
export and the manifest's image spec without any other change to vlsi_edge."""

from __future__ import annotations

import pytest
import torch

from tests import test_families
from tests.conftest import TINY
from tests.vicuna_family import VicunaLlavaFamily
from vlsi_edge.config import load_config
from vlsi_edge.deploy.onnx_export import export_onnx
from vlsi_edge.deploy.pipeline import image_spec
from vlsi_edge.families import FAMILIES, build_batch, chat_messages, get_family
from vlsi_edge.families.parts import split_model
from vlsi_edge.families.sources import load_source
from vlsi_edge.families.tokenizer import family_tokenizer
from vlsi_edge.recipes import RunConfig
from vlsi_edge.runtime.eager import generate


@pytest.fixture(scope="module")
def vicuna():
    family = VicunaLlavaFamily()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(FAMILIES, family.name, family)  # the one registry line
        tokenizer = family_tokenizer(family)
        torch.manual_seed(0)
        model = family.load(family.tiny_config(tokenizer, TINY)).eval()
        yield family, tokenizer, family.build_processor(tokenizer, TINY), model


def test_the_family_checks_pass(vicuna, shapes_samples):
    for check in (test_families.test_forward_loss_and_hidden_states, test_families.test_labels_are_answer_only,
                  test_families.test_prompt_plus_answer_equals_joint_tokenization,
                  test_families.test_batch_padding_keeps_answers, test_families.test_left_padded_generation_matches_single):
        check(vicuna, shapes_samples)
    test_families.test_module_groups_partition_parameters(vicuna)
    family, _, processor, _ = vicuna
    assert family.image_token_count(processor, TINY.image_size) == (TINY.image_size // TINY.patch_size) ** 2


def test_recipes_and_sources_know_it(vicuna):
    family = vicuna[0]
    assert load_config(RunConfig, overrides=["model.family=vicuna_llava"]).model.family == "vicuna_llava"
    assert get_family("vicuna_llava") is family
    model, processor, _ = load_source(family, "tiny:2")
    assert len(family.decoder_layers(model)) == 2


def test_chat_template_renders_the_prompt(vicuna):
    family, tokenizer, _, _ = vicuna
    tokenizer.chat_template = family.chat_template()
    for history in ((), (("how many circles?", "2"),)):
        rendered = tokenizer.apply_chat_template(chat_messages("what color?", history), add_generation_prompt=True,
                                                 tokenize=False)
        assert rendered == family.prompt("what color?", history)


def test_split_programs_and_onnx_answer_like_the_model(vicuna, shapes_samples, tmp_path):
    from vlsi_edge.runtime import OnnxVLM

    family, tokenizer, processor, model = vicuna
    parts = split_model(model, family, TINY.image_size, max_cache_len=64)
    export_onnx(model, family, TINY.image_size, tmp_path)
    onnx = OnnxVLM.from_dir(tmp_path / "onnx", parts.image_token_id, image_grid=parts.mrope_grid)
    eos = tokenizer.convert_tokens_to_ids(family.eos_token)
    for sample in shapes_samples[:3]:
        batch = build_batch(family, processor, [sample], with_answer=False)
        batch.pop("labels")
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = [t for t in out[0, batch["input_ids"].shape[1]:].tolist() if t != eos]
        tokens, _ = generate(parts, batch["input_ids"], batch["pixel_values"], eos, max_new_tokens=6)
        assert tokens == expected[: len(tokens)] and len(tokens) == len(expected)
        assert onnx.generate(batch["input_ids"].numpy(), batch["pixel_values"].numpy(), eos, 6).tokens == tokens
    assert image_spec(family, processor, TINY.image_size)["resize"] == "stretch_to_square"  # LLaVA's rule, from the processor
