"""The maths of VLsI distillation: KL / CE properties, verbalizer identities, layer-matching invariants."""

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
    adaptive_temperature,
    answer_mask,
    check_target_layers,
    kl_divergence,
    per_sample_mean,
    load_verbalizers,
    match_layers,
    save_verbalizers,
    search_range,
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


# ---- layer matching ----------------------------------------------------------------------------------
def _never(i_s, cands):
    raise AssertionError("this strategy must not compute KLs")


def test_search_range_and_adaptive_temperature():
    assert search_range(0, 0, 3, 5) == [0, 1, 2]
    assert search_range(1, 2, 3, 5) == [2, 3]
    assert search_range(2, 4, 3, 5) == [4]  # the last student target's range ends at t_l - 1
    assert search_range(6, 0, 7, 20) == list(range(20))
    with pytest.raises(ValueError):
        search_range(1, 4, 3, 5)  # start past the end: order preservation would have prevented this
    assert adaptive_temperature(torch.tensor([0.5, 1.5, 1.0])) == pytest.approx(2.0 / (1.0 + 1e-6))
    assert adaptive_temperature(torch.tensor([3.0, 1.0]), scale=4.0, eps=0.0) == pytest.approx(2.0)
    assert adaptive_temperature(torch.tensor([0.7])) == pytest.approx(2.0 / 1e-6)  # one candidate


def test_adaptive_matching_invariants_over_random_draws():
    rng = torch.Generator().manual_seed(0)
    calls = []

    def candidate_kl(i_s, cands):
        calls.append(list(cands))
        return torch.rand(len(cands), generator=rng) * 5

    for _ in range(2000):
        t_l = int(torch.randint(1, 21, (1,), generator=rng))
        t_s = int(torch.randint(1, min(8, t_l) + 1, (1,), generator=rng))
        calls.clear()
        r = match_layers(candidate_kl, t_s, t_l, generator=rng)
        assert [i_s for i_s, _ in r.pairs] == list(range(t_s))
        assert calls == r.candidates  # KLs are computed for exactly the candidates, once per student target
        previous = -1
        for (i_s, i_l), cands, kls, T in zip(r.pairs, r.candidates, r.candidate_kls, r.temperatures):
            assert cands == search_range(i_s, previous + 1, t_s, t_l) and cands
            assert cands[-1] == t_l - t_s + i_s and i_l in cands
            assert i_l > previous  # strictly increasing: order preserved
            assert T == pytest.approx(adaptive_temperature(torch.tensor(kls, dtype=torch.float64)))
            previous = i_l
        assert r.candidates[-1][-1] == t_l - 1


def test_adaptive_sampling_frequencies_follow_softmax():
    kls = torch.tensor([1.0, 0.2, 0.6, 1.4, 0.9])
    g = torch.Generator().manual_seed(1)
    n = 4000
    for temperature in (None, 0.3):
        counts = torch.zeros(5)
        for _ in range(n):
            r = match_layers(lambda i_s, c: kls[c], 1, 5, generator=g, temperature=temperature)
            counts[r.pairs[0][1]] += 1
        T = temperature or 2.0 / (1.2 + 1e-6)
        expected = torch.softmax(-kls / T, dim=0)
        assert (counts / n - expected).abs().max() < 0.03
        assert counts.argmax() == 1 and counts.argmin() == 3  # lowest KL most often, highest least
        assert r.temperatures == [pytest.approx(T)]


def test_ablation_variants_of_adaptive():
    kl = lambda i_s, c: torch.linspace(0.1, 1.0, len(c))  # noqa: E731
    unranged = match_layers(kl, 3, 6, ranged=False, order=False, generator=torch.Generator().manual_seed(0))
    assert unranged.candidates == [list(range(6))] * 3
    unordered = match_layers(kl, 3, 6, order=False, generator=torch.Generator().manual_seed(0))
    assert unordered.candidates == [[0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    for seed in range(20):  # order without range is capped to exactly the ranged search
        a = match_layers(kl, 3, 6, ranged=False, generator=torch.Generator().manual_seed(seed))
        b = match_layers(kl, 3, 6, generator=torch.Generator().manual_seed(seed))
        assert a == b
    with pytest.raises(ValueError, match="temperature"):
        match_layers(kl, 3, 6, temperature=0.0)


def test_uniform_bottom1_and_random_strategies():
    r = match_layers(_never, 7, 20, strategy="uniform")
    assert r.pairs == [(i, 2 * i) for i in range(7)]
    assert match_layers(_never, 3, 4, strategy="uniform").pairs == [(0, 0), (1, 1), (2, 2)]

    table = torch.tensor([[0.9, 0.5, 0.1, 0.7], [0.05, 0.8, 0.3, 0.6], [0.4, 0.4, 0.9, 0.2]])
    r = match_layers(lambda i_s, c: table[i_s, c], 3, 4, strategy="bottom1")
    assert r.pairs == [(0, 2), (1, 0), (2, 3)]  # argmin per student target, order ignored
    assert r.candidates == [[0, 1, 2, 3]] * 3 and r.candidate_kls[1] == pytest.approx(table[1].tolist())

    g = torch.Generator().manual_seed(2)
    counts = torch.zeros(10)
    for _ in range(500):
        for _, i_l in match_layers(_never, 10, 10, strategy="random", generator=g).pairs:
            counts[i_l] += 1
    assert (counts / 5000 - 0.1).abs().max() < 0.02
    assert all(math.isnan(T) for T in r.temperatures)


@pytest.mark.parametrize("strategy", ["adaptive", "random"])
def test_same_seed_same_matches(strategy):
    kl = lambda i_s, c: torch.ones(len(c))  # noqa: E731  (equal KLs: maximal randomness)
    runs = [match_layers(kl, 5, 20, strategy, torch.Generator().manual_seed(7)).pairs for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    others = {tuple(match_layers(kl, 5, 20, strategy, torch.Generator().manual_seed(s)).pairs) for s in range(20)}
    assert len(others) > 1


def test_matching_errors():
    kl = lambda i_s, c: torch.zeros(len(c))  # noqa: E731
    with pytest.raises(ValueError, match=r"t_s=5.*> t_l=3.*own teacher target"):
        match_layers(kl, 5, 3)
    with pytest.raises(ValueError, match="adaptive, uniform, bottom1, random"):
        match_layers(kl, 2, 3, strategy="greedy")
    with pytest.raises(ValueError, match="at least one"):
        match_layers(kl, 0, 3)
    with pytest.raises(ValueError, match="2 KLs for 3 candidates"):
        match_layers(lambda i_s, c: torch.zeros(2), 1, 3)
    with pytest.raises(ValueError, match="non-finite"):
        match_layers(lambda i_s, c: torch.full((len(c),), float("nan")), 1, 3)
