"""Layer matching (VLsI step 2): search range, adaptive temperature, invariants of the sampled matches."""

from __future__ import annotations

import math

import pytest
import torch

from vlsi_edge.distill import adaptive_temperature, match_layers, search_range


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
