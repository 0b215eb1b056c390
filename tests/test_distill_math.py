"""The maths of VLsI distillation: KL / CE properties on answer positions, verbalizer identities, target layers
(layer matching: tests/test_matching.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical
from torch.distributions import kl_divergence as dist_kl

from vlsi_edge.distill.steps import KLSettings, answer_states, final_kd_loss, sft_loss, verbalization_losses
from vlsi_edge.distill import (
    IGNORE_INDEX,
    VerbFFN,
    Verbalizers,
    answer_mask,
    check_target_layers,
    kl_divergence,
    per_sample_mean,
    load_verbalizers,
    save_verbalizers,
    target_layers,
    verbalize,
)


def _logits(*shape: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


# ---- KL over the vocabulary ------------------------------------------------------------------------
def test_kl_nonnegative_and_zero_on_identical():
    t, s = _logits(64, 30, seed=1), _logits(64, 30, seed=2)
    for direction in ("forward", "reverse"):
        assert (kl_divergence(t, s, direction) >= -1e-6).all()
        assert kl_divergence(t, t.clone(), direction).abs().max() <= 1e-6
    assert kl_divergence(t, s).min() > 0.01  # genuinely different distributions


def test_kl_directions_match_hand_computation():
    t, s = _logits(16, 12, seed=3), _logits(16, 12, seed=4)
    forward, reverse = kl_divergence(t, s, "forward"), kl_divergence(t, s, "reverse")
    torch.testing.assert_close(forward, dist_kl(Categorical(logits=t), Categorical(logits=s)))
    torch.testing.assert_close(reverse, dist_kl(Categorical(logits=s), Categorical(logits=t)))
    p_t, p_s = t.softmax(-1), s.softmax(-1)
    torch.testing.assert_close(forward, (p_t * (p_t.log() - p_s.log())).sum(-1), atol=1e-5, rtol=1e-5)
    assert (forward - reverse).abs().max() > 1e-2  # KL is asymmetric
    torch.testing.assert_close(kl_divergence(t, s, "reverse"), kl_divergence(s, t, "forward"))


def test_kl_temperature_scales_softmax_and_multiplies_by_t_squared():
    t, s = _logits(8, 20, seed=5), _logits(8, 20, seed=6)
    T = 2.5
    manual = T**2 * dist_kl(Categorical(logits=t / T), Categorical(logits=s / T))
    torch.testing.assert_close(kl_divergence(t, s, temperature=T), manual)
    manual_rev = T**2 * dist_kl(Categorical(logits=s / T), Categorical(logits=t / T))
    torch.testing.assert_close(kl_divergence(t, s, "reverse", temperature=T), manual_rev)
    with pytest.raises(ValueError, match="temperature"):
        kl_divergence(t, s, temperature=0.0)


def test_kl_flattens_leading_dims_and_chunking_is_exact():
    t, s = _logits(3, 17, 40, seed=7), _logits(3, 17, 40, seed=8)
    full = kl_divergence(t, s)
    torch.testing.assert_close(full.reshape(-1), kl_divergence(t.reshape(-1, 40), s.reshape(-1, 40)))
    for chunk in (1, 7, 50, 1000):
        torch.testing.assert_close(kl_divergence(t, s, chunk_size=chunk), full, atol=1e-6, rtol=1e-6)
    # gradients through the checkpointed chunks equal the unchunked ones
    grads = []
    for chunk in (0, 7):
        student = s.clone().requires_grad_(True)
        (kl_divergence(t, student, "reverse", temperature=2.0, chunk_size=chunk) ** 2).sum().backward()
        grads.append(student.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_kl_vocab_prefix_and_width_mismatch():
    t, s = _logits(10, 40, seed=9), _logits(10, 35, seed=10)
    torch.testing.assert_close(kl_divergence(t, s, vocab=30), kl_divergence(t[:, :30], s[:, :30]))
    # padding rows beyond `vocab` do not matter, however large
    t_padded = torch.cat([t[:, :30], torch.full((10, 10), 50.0)], dim=-1)
    torch.testing.assert_close(kl_divergence(t_padded, s, vocab=30), kl_divergence(t, s, vocab=30))
    with pytest.raises(ValueError, match=r"40.*35"):
        kl_divergence(t, s)
    with pytest.raises(ValueError, match="vocab=36"):
        kl_divergence(t, s, vocab=36)
    with pytest.raises(ValueError, match="forward, reverse"):
        kl_divergence(t, t, direction="sideways")  # type: ignore[arg-type]


# ---- answer positions --------------------------------------------------------------------------------
LABELS = torch.tensor([[-100, -100, 5, 6, -100], [-100, 3, -100, -100, 7], [-100, -100, -100, -100, -100]])


def test_answer_mask_is_the_causal_shift():
    expected = torch.tensor(
        [[False, True, True, False, False], [True, False, False, True, False], [False] * 5]
    )
    assert torch.equal(answer_mask(LABELS), expected)
    assert IGNORE_INDEX == -100
    from vlsi_edge.families import IGNORE_INDEX as family_ignore

    assert IGNORE_INDEX == family_ignore


class FixedLogits(torch.nn.Module):
    """A "model" whose forward returns given logits: isolates the answer-position gather from any network."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, output_hidden_states=False):
        return SimpleNamespace(logits=self.logits, hidden_states=None)


def _states(logits: torch.Tensor, labels: torch.Tensor = LABELS):
    return answer_states(None, FixedLogits(logits), {"input_ids": labels.clamp(min=0), "labels": labels}, [])


def test_answer_states_gather_answer_positions_only():
    logits = _logits(3, 5, 20, seed=10)
    states = _states(logits)
    mask = answer_mask(LABELS)
    torch.testing.assert_close(states.logits, logits[mask])
    assert states.targets.tolist() == [5, 6, 3, 7]  # the answer token each position predicts
    assert states.sample.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="no answer tokens"):
        _states(logits, torch.full_like(LABELS, IGNORE_INDEX))


def test_final_kd_averages_over_answer_tokens_only():
    t, s = _logits(3, 5, 20, seed=11), _logits(3, 5, 20, seed=12)
    mask = answer_mask(LABELS)
    per_position = kl_divergence(t, s)
    value = final_kd_loss(_states(t).logits, _states(s), KLSettings())
    torch.testing.assert_close(value, per_position[mask].sum() / 4)  # 4 answer tokens, token-weighted
    # logits at non-answer positions (prompt, the last position, the answer-less sample) are irrelevant
    t2, s2 = t.clone(), s.clone()
    t2[~mask], s2[~mask] = _logits(11, 20, seed=13), _logits(11, 20, seed=14)
    assert torch.equal(final_kd_loss(_states(t2).logits, _states(s2), KLSettings()), value)
    s2[0, 1] += _logits(20, seed=15)  # an answer position
    assert not torch.allclose(final_kd_loss(_states(t2).logits, _states(s2), KLSettings()), value)


def test_per_sample_kl_is_each_samples_own_answer_mean():
    t, s = _logits(3, 5, 20, seed=16), _logits(3, 5, 20, seed=17)
    per_position, mask = kl_divergence(t, s, "reverse"), answer_mask(LABELS)
    student = _states(s)
    kl = KLSettings(direction="reverse")(_states(t).logits, student.logits)
    per_sample = per_sample_mean(kl, student.sample, 3)
    torch.testing.assert_close(per_sample[0], per_position[0, 1:3].mean())
    torch.testing.assert_close(per_sample[1], per_position[1, [0, 3]].mean())
    assert math.isnan(per_sample[2].item())  # no answer tokens: NaN, as documented
    counts = mask.sum(-1)[:2].float()
    torch.testing.assert_close((per_sample[:2] * counts).sum() / counts.sum(), kl.mean())


def test_sft_loss_equals_shifted_ce_and_hf_loss(tiny_llama):
    logits = _logits(3, 5, 20, seed=18)
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, 20), LABELS[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    torch.testing.assert_close(sft_loss(_states(logits)), expected)

    g = torch.Generator().manual_seed(19)
    input_ids = torch.randint(0, 50, (2, 9), generator=g)
    labels = input_ids.clone()
    labels[0, :4] = IGNORE_INDEX  # prompt
    labels[1, :6] = IGNORE_INDEX
    labels[1, 8] = IGNORE_INDEX  # padding
    with torch.no_grad():
        out = tiny_llama(input_ids=input_ids, labels=labels)
        trained = sft_loss(answer_states(None, tiny_llama, {"input_ids": input_ids, "labels": labels}, []))
    torch.testing.assert_close(trained, out.loss, atol=1e-6, rtol=1e-6)


# ---- verbalizers -------------------------------------------------------------------------------------
def test_residual_verbalizer_starts_as_the_logit_lens(tiny_llama):
    norm, head = tiny_llama.model.norm, tiny_llama.lm_head
    h = _logits(2, 6, 32, seed=20, scale=1.0)
    with torch.no_grad():
        lens = head(norm(h))
        assert torch.equal(verbalize(Verbalizers(32, [0, 2]), 2, h, norm, head), lens)
        torch.manual_seed(0)
        plain = verbalize(Verbalizers(32, [0, 2], residual=False), 2, h, norm, head)
    assert (plain - lens).abs().max() > 1e-2


def test_verb_ffn_has_three_square_bias_free_linears():
    d = 24
    ffn = VerbFFN(d)
    assert all(m.bias is None for m in (ffn.gate, ffn.up, ffn.down))
    assert sum(p.numel() for p in ffn.parameters()) == 3 * d * d
    assert sum(p.numel() for p in Verbalizers(d, [2, 6, 10, 14, 18, 22, 26]).parameters()) == 7 * 3 * d * d
    # the paper's 269M verbalizer parameters: 7 targets of a d=3584 (Qwen2-VL 7B) student
    assert 7 * 3 * 3584**2 == 269_746_176
    # the formula itself: down(silu(gate h) * up h), plain form
    torch.manual_seed(1)
    plain, h = VerbFFN(d, residual=False), _logits(5, d, seed=21)
    manual = (F.silu(h @ plain.gate.weight.T) * (h @ plain.up.weight.T)) @ plain.down.weight.T
    torch.testing.assert_close(plain(h), manual)


@pytest.mark.parametrize("residual", [True, False])
def test_gradients_reach_verb_ffn_and_hidden_state_not_frozen_head(tiny_llama, residual):
    norm, head = tiny_llama.model.norm, tiny_llama.lm_head
    for p in (*norm.parameters(), *head.parameters()):
        p.requires_grad_(False)
    torch.manual_seed(2)
    verb = Verbalizers(32, [1, 3], residual=residual)
    h = _logits(2, 5, 32, seed=22, scale=1.0).requires_grad_(True)
    states = SimpleNamespace(hidden={1: h.reshape(10, 32).detach(), 3: h.reshape(10, 32)}, targets=torch.randint(0, 50, (10,)))
    verbalization_losses(states, verb, norm, head)[3].backward()
    ffn = verb.ffns["3"]
    assert ffn.down.weight.grad.abs().sum() > 0
    if residual:  # zero-initialised down: gate/up get no gradient until down has moved
        assert torch.equal(ffn.gate.weight.grad, torch.zeros_like(ffn.gate.weight))
    else:
        assert ffn.gate.weight.grad.abs().sum() > 0 and ffn.up.weight.grad.abs().sum() > 0
    assert h.grad.abs().sum() > 0  # the student's layers are trained through the verbalizer
    assert verb.ffns["1"].down.weight.grad is None  # another layer's verbalizer is untouched
    assert all(p.grad is None for p in (*norm.parameters(), *head.parameters()))
    with pytest.raises(KeyError, match=r"\[1, 3\]"):
        verb(2, h)


def test_save_load_round_trip_and_corruption(tmp_path, tiny_llama):
    norm, head = tiny_llama.model.norm, tiny_llama.lm_head
    torch.manual_seed(3)
    verb = Verbalizers(32, [6, 2], residual=False)
    save_verbalizers(verb, tmp_path / "v", {"checkpoint": "teacher-7b", "step": 12})
    loaded, meta = load_verbalizers(tmp_path / "v")
    assert meta == {"checkpoint": "teacher-7b", "step": 12}
    assert loaded.layers == [2, 6] and loaded.residual is False and loaded.hidden_size == 32
    h = _logits(4, 32, seed=23)
    with torch.no_grad():
        for layer in (2, 6):
            assert torch.equal(verbalize(loaded, layer, h, norm, head), verbalize(verb, layer, h, norm, head))

    save_verbalizers(Verbalizers(32, [1]).to(torch.bfloat16), tmp_path / "bf16", {})
    assert next(load_verbalizers(tmp_path / "bf16")[0].parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="reserved"):
        save_verbalizers(verb, tmp_path / "x", {"layers": [0]})

    (tmp_path / "v" / "verbalizers.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="verbalizers.safetensors"):
        load_verbalizers(tmp_path / "v")
    (tmp_path / "bf16" / "verbalizers.json").write_text("{truncated")
    with pytest.raises(ValueError, match="verbalizers.json"):
        load_verbalizers(tmp_path / "bf16")
    with pytest.raises(FileNotFoundError, match="verbalizers.json"):
        load_verbalizers(tmp_path / "nowhere")


# ---- target layers -----------------------------------------------------------------------------------
def test_target_layers_paper_settings():
    assert target_layers(28, 4, 2) == [2, 6, 10, 14, 18, 22, 26]
    teacher = target_layers(80, 4, 2)
    assert len(teacher) == 20 and teacher[0] == 2 and teacher[-1] == 78
    assert check_target_layers(teacher, 80, "teacher") == teacher
    with pytest.raises(ValueError, match="offset"):
        target_layers(28, 4, 28)


@pytest.mark.parametrize(
    "layers, pattern",
    [([2, 28], r"student target layer 28 .*\[0, 28\)"), ([2, 6, 6], "student .*6 is duplicated"),
     ([6, 2], "student .*sorted"), ([-1, 4], r"student target layer -1 .*\[0, 28\)"), ([], "student .*empty")],
)  # fmt: skip
def test_check_target_layers_names_role_index_and_range(layers, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_target_layers(layers, 28, "student")
