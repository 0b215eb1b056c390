"""Family adapters on tiny random configs: forward, per-layer states, label masking, round trips."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY, tiny_tokenizer
from vlsi_edge.families import (
    IGNORE_INDEX,
    VocabularyMismatch,
    build_batch,
    build_example,
    check_vocab_compatible,
    get_family,
)


def test_forward_loss_and_hidden_states(tiny, shapes_samples):
    family, _, processor, model = tiny
    batch = build_batch(family, processor, shapes_samples[:4])
    out = model(**batch, output_hidden_states=True)
    layers = family.decoder_layers(model)
    assert torch.isfinite(out.loss)
    # Random init: the loss is close to uniform over the vocabulary.
    assert abs(out.loss.item() - torch.log(torch.tensor(float(model.config.get_text_config().vocab_size)))) < 1.0
    assert len(out.hidden_states) == len(layers) + 1
    assert out.hidden_states[0].shape[-1] == family.hidden_size(model)

    # hidden_states[k + 1] is what decoder layer k outputs: capture it with hooks and compare.
    captured = []
    hooks = [layer.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o)) for layer in layers]
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    for h in hooks:
        h.remove()
    for k in range(len(layers) - 1):
        torch.testing.assert_close(captured[k], out.hidden_states[k + 1])
    # The last entry is after the final norm, and the lm_head of it gives the logits.
    torch.testing.assert_close(out.hidden_states[-1], family.final_norm(model)(captured[-1]))
    torch.testing.assert_close(family.lm_head(model)(out.hidden_states[-1]), out.logits)


def test_labels_are_answer_only(tiny, shapes_samples):
    family, tokenizer, processor, _ = tiny
    for sample in shapes_samples:
        ex = build_example(family, processor, sample)
        labels, ids = ex["labels"][0], ex["input_ids"][0]
        answer_positions = (labels != IGNORE_INDEX).nonzero().flatten()
        # One contiguous span at the very end, equal to the input ids there.
        assert answer_positions.tolist() == list(range(len(ids) - len(answer_positions), len(ids)))
        assert torch.equal(labels[answer_positions], ids[answer_positions])
        text = tokenizer.decode(labels[answer_positions])
        assert text.strip() == f"{sample.answer}{family.eos_token}"
        # No image token is ever a target.
        image_id = tokenizer.convert_tokens_to_ids(family.image_token)
        assert (labels != image_id).all()


def test_prompt_plus_answer_equals_joint_tokenization(tiny, shapes_samples):
    """build_example tokenizes prompt and answer apart; that must equal processing the joined text."""
    family, _, processor, _ = tiny
    for sample in shapes_samples:
        ex = build_example(family, processor, sample)
        joint = family.process(processor, [sample.image], [family.prompt(sample.question) + family.answer_text(sample.answer)])
        assert torch.equal(ex["input_ids"], joint["input_ids"])


def test_batch_padding_keeps_answers(tiny, shapes_samples):
    family, _, processor, model = tiny
    batch = build_batch(family, processor, shapes_samples[:4])
    singles = [build_example(family, processor, s) for s in shapes_samples[:4]]
    for row, single in enumerate(singles):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        assert torch.equal(kept, single["labels"][0][single["labels"][0] != IGNORE_INDEX])
    # Per-sample loss on the padded batch equals the loss of each sample alone.
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for row, single in enumerate(singles):
            alone = model(**{k: v for k, v in single.items() if k != "labels"}).logits[0]
            n = single["input_ids"].shape[1]
            torch.testing.assert_close(logits[row, :n], alone, atol=1e-4, rtol=1e-4)


def test_left_padded_generation_matches_single(tiny, shapes_samples):
    family, tokenizer, processor, model = tiny
    samples = shapes_samples[:3]
    batch = build_batch(family, processor, samples, with_answer=False, padding_side="left")
    batch.pop("labels")
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    for row, sample in enumerate(samples):
        single = build_batch(family, processor, [sample], with_answer=False)
        single.pop("labels")
        with torch.no_grad():
            alone = model.generate(**single, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert together[row, -4:].tolist() == alone[0, -4:].tolist()


def test_module_groups_partition_parameters(tiny):
    family, _, _, model = tiny
    groups = family.module_groups(model)
    assert set(groups) == {"vision", "projector", "language"}
    seen: dict[int, str] = {}
    for name, modules in groups.items():
        for module in modules:
            for p in module.parameters():
                assert id(p) not in seen or seen[id(p)] == name, f"parameter in {seen[id(p)]} and {name}"
                seen[id(p)] = name
    assert {id(p) for p in model.parameters()} == set(seen)
    assert family.lm_head(model).weight.shape[0] == model.config.get_text_config().vocab_size
    assert family.final_norm(model).weight.shape[0] == family.hidden_size(model)


def test_save_load_round_trip(tiny, shapes_samples, tmp_path):
    family, tokenizer, processor, model = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = family.load(tmp_path).eval()
    loaded_processor = family.load_processor(tmp_path)
    assert family.tokenizer(loaded_processor).get_vocab() == tokenizer.get_vocab()
    batch = build_batch(family, processor, shapes_samples[:2])
    batch2 = build_batch(family, loaded_processor, shapes_samples[:2])
    for key in batch:
        torch.testing.assert_close(batch[key], batch2[key])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch2).logits)


def test_image_token_count(tiny):
    family, _, processor, model = tiny
    count = family.image_token_count(processor, TINY.image_size)
    patches = (TINY.image_size // TINY.patch_size) ** 2
    expected = {"idefics3": patches // 4, "qwen2_vl": patches // 4, "llava": patches}[family.name]
    assert count == expected


def test_load_refuses_non_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        get_family("idefics3").load(tmp_path)


def test_unknown_family():
    with pytest.raises(ValueError, match="known: idefics3"):
        get_family("gpt2")


@pytest.mark.parametrize("name", ["idefics3", "qwen2_vl", "llava"])
def test_vocab_check(name):
    family = get_family(name)
    teacher = tiny_tokenizer(name)
    student = tiny_tokenizer(name)
    assert check_vocab_compatible(teacher, student) == len(student)
    # A tokenizer whose special tokens come in another order shifts ids: refused, naming tokens and ids.
    shifted = tiny_tokenizer(name, extra_specials=("<extra>",))
    with pytest.raises(VocabularyMismatch, match="different ids"):
        check_vocab_compatible(teacher, shifted)
    # Logit width narrower than the tokenizer: refused.
    torch.manual_seed(0)
    small = family.load(family.tiny_config(teacher, TINY))
    small.resize_token_embeddings(len(teacher) - 5)
    with pytest.raises(VocabularyMismatch, match="lm_head has"):
        check_vocab_compatible(teacher, student, student_model=small)


def test_vocab_check_sees_fewer_merges_through_the_texts():
    """A smaller BPE of the same text keeps every id it has (a prefix of the merges) but splits words
    differently: the id check alone passes, the encoding check on training texts refuses it."""
    from vlsi_edge.families.tokenizer import family_tokenizer

    family = get_family("idefics3")
    teacher, student = family_tokenizer(family, vocab_size=400), family_tokenizer(family, vocab_size=300)
    texts = [family.prompt("what color is the circle?") + family.answer_text("red")]
    assert check_vocab_compatible(teacher, student) == len(student)  # ids alone agree
    with pytest.raises(VocabularyMismatch, match="tokenize .* differently"):
        check_vocab_compatible(teacher, student, texts=texts)
    assert check_vocab_compatible(teacher, teacher, texts=texts) == len(teacher)


def test_llava_resize_rule_is_what_its_processor_does():
    """The manifest's `image.resize` for LLaVA comes from the checkpoint's image processor: SigLIP's (the tiny
    config, LLaVA-OneVision) stretches any image to size x size; CLIP's (LLaVA-1.5) crops the centre."""
    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessor

    family = get_family("llava")
    processor = family.build_processor(tiny_tokenizer("llava"), TINY)
    assert family.image_resize_rule(processor) == "stretch_to_square"
    ip = processor.image_processor
    size = ip.size["height"]
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 150, 3), dtype=np.uint8))
    ours = ip(picture, return_tensors="np")["pixel_values"][0]
    stretched = np.asarray(picture.resize((size, size), ip.resample), np.float32) * ip.rescale_factor
    expected = ((stretched - ip.image_mean) / ip.image_std).transpose(2, 0, 1)
    np.testing.assert_allclose(ours, expected, atol=2e-2)  # the processor's own resize: the same filter, float math

    processor.image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size=size)
    assert family.image_resize_rule(processor) == "shortest_edge_then_center_crop"


def test_a_pinned_qwen2_vl_processor_gives_every_image_the_programs_grid():
    """min = max pixels alone keeps the aspect ratio (150x112 -> a 2x4 patch grid at 64 px, not 4x4); the export's processor
    stretches any image to size x size first, so every image is the one grid the programs take."""
    from PIL import Image

    from vlsi_edge.config import ConfigError
    from vlsi_edge.deploy.pipeline import fixed_input

    family = get_family("qwen2_vl")
    processor = family.build_processor(tiny_tokenizer("qwen2_vl"), TINY)
    probe = Image.new("RGB", (TINY.image_size, TINY.image_size), (200, 30, 30))
    stock = processor.image_processor(images=[Image.new("RGB", (150, 112))], return_tensors="pt")
    assert stock["image_grid_thw"].tolist() == [[1, 2, 4]]  # the stock processor, pinned to 64 x 64 pixels
    for size in (TINY.image_size, 32, 96):
        fixed, got = fixed_input(family, processor, probe, size if size != TINY.image_size else None)
        assert got == size
        assert fixed.image_processor.size == {"shortest_edge": size * size, "longest_edge": size * size}
        for dims in ((150, 112), (61, 97), (size, size)):
            out = family.process(fixed, [Image.new("RGB", dims, (10, 200, 30))], [family.prompt("?")])
            assert out["image_grid_thw"].tolist() == [[1, size // 16, size // 16]], dims
    with pytest.raises(ConfigError, match=r"image_size: 48 is not a multiple of patch_size \* merge_size = 32"):
        fixed_input(family, processor, probe, 48)
    assert processor.image_processor.size["shortest_edge"] == TINY.image_size ** 2  # the caller's is not changed
