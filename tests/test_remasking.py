"""Remasking strategies (margin, entropy, threshold, remdm) and EOS handling on tiny hand-made models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from llada.diffusion.remasking import (
    REMASKINGS,
    EntropyRemasking,
    LowConfidenceRemasking,
    MarginRemasking,
    RandomRemasking,
    RemdmRemasking,
    ThresholdRemasking,
    make_remasking,
)
from llada.diffusion.sampling import generate
from llada.diffusion.token_choice import Greedy, Multinomial

MASK = 99  # outside the toy vocabularies


def log_probs(rows: list[list[float]]) -> Tensor:
    """(1, L, V) logits whose softmax is exactly the given distributions (zeros become -inf)."""
    return torch.tensor(rows).log().unsqueeze(0)


class TableModel:
    """Context-free model: fixed logits per position; records every canvas it is called on."""

    def __init__(self, table: Tensor) -> None:
        self.table = table  # (L, V)
        self.canvases: list[Tensor] = []

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.canvases.append(canvas.clone())
        return self.table.expand(canvas.shape[0], -1, -1)  # (B, L, V)


def commit_steps(trajectory: list[Tensor], start: Tensor) -> Tensor:
    """(B, L) index of the step at which each position was last committed (-1: given)."""
    step_of = torch.full(start.shape, -1)
    previous = start
    for index, state in enumerate(trajectory):
        step_of[(previous == MASK) & (state != MASK)] = index
        previous = state
    return step_of


def test_margin_ranks_by_gap_between_top_two() -> None:
    # Position 0: the more probable top-1 (0.6) but a close second; position 1: 0.5 far ahead.
    logits = log_probs([[0.6, 0.4, 0.0], [0.5, 0.25, 0.25]])
    tokens = logits.argmax(-1)
    margin = MarginRemasking().confidence(logits, tokens)
    assert margin.dtype == torch.float32 and margin.shape == (1, 2)
    assert torch.allclose(margin, torch.tensor([[0.2, 0.25]]), atol=1e-6)
    assert margin.argmax() == 1
    assert LowConfidenceRemasking().confidence(logits, tokens).argmax() == 0


def test_entropy_prefers_peaked_distributions_over_probable_top1() -> None:
    # A: two-way tie (top-1 0.5, H = ln 2); B: top-1 0.55 but spread over four tokens (H ~ 1.18).
    probs = [[0.5, 0.5, 0.0, 0.0], [0.55, 0.15, 0.15, 0.15]]
    logits = log_probs(probs)
    score = EntropyRemasking().confidence(logits, logits.argmax(-1))
    expected = [sum(p * math.log(p) for p in row if p > 0) for row in probs]
    assert torch.isfinite(score).all()  # zero-probability tokens add nothing, not NaN
    assert torch.allclose(score, torch.tensor([expected]), atol=1e-6)
    assert score[0, 0] > score[0, 1]
    assert LowConfidenceRemasking().confidence(logits, logits.argmax(-1)).argmax() == 1


def test_margin_with_one_token_vocabulary_is_certain() -> None:
    logits = torch.zeros(1, 3, 1)
    assert torch.equal(MarginRemasking().confidence(logits, logits.argmax(-1)), torch.ones(1, 3))


def test_entropy_order_drives_generation() -> None:
    # Entropy rises with position (0.69, 0.98, 1.23 nats) while the top-1 probability rises too
    # (0.5, 0.55, 0.6): entropy and low_confidence commit in opposite orders.
    rows = [[0.5, 0.5, 0.0, 0.0, 0.0], [0.55, 0.3, 0.15, 0.0, 0.0], [0.6, 0.1, 0.1, 0.1, 0.1]]
    table = torch.tensor(rows).log()
    orders = {}
    for name in ("entropy", "low_confidence"):
        result = generate(
            TableModel(table),
            torch.full((1, 3), MASK),
            MASK,
            steps=3,
            chooser=Greedy(),
            remasking=make_remasking(name),
            record=True,
        )
        orders[name] = commit_steps(result.trajectory, torch.full((1, 3), MASK))[0].tolist()
    assert orders == {"entropy": [0, 1, 2], "low_confidence": [2, 1, 0]}


def test_threshold_commit_count_counts_confident_positions_and_at_least_one() -> None:
    strategy = ThresholdRemasking(threshold=0.9)
    score = torch.tensor([[0.95, 0.91, 0.2, float("-inf")], [0.3, 0.1, 0.89, float("-inf")]])
    eligible = torch.tensor([[True, True, True, False], [True, True, True, False]])
    count = strategy.commit_count(score, eligible, torch.tensor([1, 3]))
    assert count.tolist() == [2, 1]  # the plan's k_s is ignored


def test_threshold_on_confident_model_needs_one_pass_per_block() -> None:
    table = torch.full((12, 6), -20.0)
    table[torch.arange(12), torch.arange(12) % 6] = 20.0  # p(top1) ~ 1 everywhere
    model = TableModel(table)
    canvas = torch.full((2, 12), MASK)
    canvas[:, :4] = 1
    result = generate(
        model,
        canvas,
        MASK,
        steps=8,
        chooser=Greedy(),
        remasking=make_remasking("threshold", threshold=0.9),
        block_length=4,
        gen_start=4,
        record=True,
    )
    assert result.nfe == 2 < 8  # two blocks, each filled by one pass
    assert len(result.trajectory) == 2
    assert torch.equal(result.tokens[:, 4:], table.argmax(-1)[4:].expand(2, -1))
    assert (result.trajectory[0][:, 4:8] != MASK).all() and (
        result.trajectory[0][:, 8:] == MASK
    ).all()


def test_threshold_on_unconfident_model_commits_one_per_step_inside_the_block() -> None:
    gen = torch.Generator().manual_seed(0)
    model = TableModel(0.1 * torch.randn(10, 8, generator=gen))  # every p(top1) well below 0.9
    canvas = torch.full((1, 10), MASK)
    canvas[:, :2] = 3
    result = generate(
        model,
        canvas,
        MASK,
        steps=2,
        chooser=Greedy(),
        remasking=ThresholdRemasking(),
        block_length=4,
        gen_start=2,
        record=True,
    )
    # 8 masks, one per step: steps adapt past the 2 planned and the true nfe is reported.
    assert result.nfe == 8 == len(result.trajectory) == len(model.canvases)
    assert not (result.tokens == MASK).any()
    previous = canvas
    for index, state in enumerate(result.trajectory):
        new = (previous == MASK) & (state != MASK)  # (1, L)
        assert new.sum() == 1
        block = index // 4  # 4 masks per block, one commit per step
        assert new[0, 2 + 4 * block : 6 + 4 * block].sum() == 1  # never outside the block
        previous = state


class FixesItsFirstGuess:
    """Position 0 guesses token 1 (fairly confident) until position 1 is known, then token 2.

    Positions' confidences: 0.6 (pos 0 while pos 1 masked), 0.55, 0.5, 0.45 -> pos 0 commits
    first, wrongly; only a strategy that can take a token back ends with the right one.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.calls += 1
        probs = torch.full((canvas.shape[0], 4, 3), 0.0)
        probs[:, 1, 0], probs[:, 2, 0], probs[:, 3, 0] = 0.55, 0.5, 0.45
        probs[:, 1:, 1:] = ((1 - probs[:, 1:, :1]) / 2).expand(-1, -1, 2)
        known = canvas[:, 1] != MASK  # (B,)
        probs[:, 0] = torch.where(
            known[:, None], torch.tensor([0.0, 0.01, 0.99]), torch.tensor([0.2, 0.6, 0.2])
        )
        return probs.log()


def test_remdm_takes_back_a_wrong_early_guess() -> None:
    canvas = torch.full((1, 4), MASK)
    plain = generate(
        FixesItsFirstGuess(),
        canvas,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
    )
    assert plain.tokens[0, 0] == 1  # committed once, never revisited
    model = FixesItsFirstGuess()
    fixed = generate(
        model,
        canvas,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=RemdmRemasking(count=1),
        record=True,
    )
    assert fixed.tokens[0, 0] == 2 and not (fixed.tokens == MASK).any()
    assert fixed.nfe == 4 == model.calls  # re-masked tokens are refilled within the planned steps
    assert (fixed.trajectory[1][0, 0] == MASK).item()  # position 0 was masked again at step 1


def test_remdm_remasks_only_generated_tokens_of_the_block_and_ends_full() -> None:
    gen = torch.Generator().manual_seed(1)
    model = TableModel(torch.randn(14, 9, generator=gen))
    canvas = torch.full((3, 14), MASK)
    canvas[:, :4] = torch.tensor([5, 6, 7, 8])  # prompt
    canvas[0, 9] = 2  # a given token inside the region
    result = generate(
        model,
        canvas,
        MASK,
        steps=10,
        chooser=Multinomial(),
        remasking=make_remasking("remdm", sigma=0.5),
        block_length=5,
        gen_start=4,
        generator=gen,
        record=True,
    )
    assert not (result.tokens == MASK).any()
    assert result.nfe == 10  # no overtime: the plan absorbs re-masked tokens
    previous = canvas
    taken_back = 0
    for index, state in enumerate(result.trajectory):
        block = index // 5  # 5 steps per block
        remasked = (previous != MASK) & (state == MASK)  # (B, L)
        taken_back += int(remasked.sum())
        assert not remasked[:, :4].any() and not remasked[0, 9]  # given tokens stay
        lo, hi = 4 + 5 * block, 9 + 5 * block
        assert not remasked[:, :lo].any() and not remasked[:, hi:].any()
        if index % 5 == 4:
            assert not remasked.any() and not (state[:, lo:hi] == MASK).any()  # block ends full
        assert torch.equal(state[:, :4], canvas[:, :4])
        previous = state
    assert taken_back > 0


def test_remdm_count_rounding_and_lowest_confidence_first() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.2, float("nan")]])
    candidates = torch.tensor([[True, True, True, False, False]])
    assert RemdmRemasking(count=2).remask(scores, candidates).tolist() == [
        [False, True, True, False, False]
    ]
    # sigma * 3 = 0.45 rounds to 0; 0.5 * 3 = 1.5 rounds half up to 2.
    assert not RemdmRemasking(sigma=0.15).remask(scores, candidates).any()
    assert RemdmRemasking(sigma=0.5).remask(scores, candidates).sum() == 2
    assert RemdmRemasking(count=10).remask(scores, candidates).tolist() == candidates.tolist()


def eos_lover(eos: int, length: int, vocab: int) -> TableModel:
    """EOS (token eos) is the confident prediction at even positions; odd ones are unsure."""
    table = torch.zeros(length, vocab)
    table[0::2, eos] = 8.0
    table[1::2, 1] = 1.0
    return TableModel(table)


def test_eos_last_commits_eos_after_everything_else() -> None:
    eos = 0
    canvas = torch.full((2, 8), MASK)
    canvas[:, :2] = 3

    def run(eos_last: bool, remasking: str) -> Tensor:
        result = generate(
            eos_lover(eos, 8, 5),
            canvas,
            MASK,
            steps=6,
            chooser=Greedy(),
            remasking=make_remasking(remasking),
            gen_start=2,
            eos_id=eos,
            eos_last=eos_last,
            generator=torch.Generator().manual_seed(0),
            record=True,
        )
        assert not (result.tokens == MASK).any()
        when = commit_steps(result.trajectory, canvas)  # (B, L)
        is_eos = result.tokens == eos
        assert is_eos[:, 2::2].all()
        return when[is_eos].min() > when[~is_eos & (when >= 0)].max()

    assert not run(eos_last=False, remasking="low_confidence")  # EOS is confident: goes first
    for remasking in ("low_confidence", "margin", "entropy", "random", "threshold"):
        assert run(eos_last=True, remasking=remasking)


def test_forbid_ids_never_appear() -> None:
    table = torch.zeros(6, 5)
    table[:, 3] = 30.0  # the model wants token 3 everywhere
    for chooser in (Greedy(), Multinomial(temperature=2.0)):
        out = generate(
            TableModel(table),
            torch.full((4, 6), MASK),
            MASK,
            steps=3,
            chooser=chooser,
            remasking=LowConfidenceRemasking(),
            forbid_ids=[3, 0],
            generator=torch.Generator().manual_seed(0),
        ).tokens
        assert not (out == MASK).any()
        assert not ((out == 3) | (out == 0)).any()
    with pytest.raises(ValueError, match=r"forbid_ids \[7\].*\[0, 5\)"):
        generate(
            TableModel(table),
            torch.full((1, 6), MASK),
            MASK,
            steps=1,
            chooser=Greedy(),
            remasking=RandomRemasking(),
            forbid_ids=[7],
        )


def test_eos_last_needs_eos_id_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match="eos_id"):
        generate(
            TableModel(torch.zeros(3, 4)),
            torch.full((1, 3), MASK),
            MASK,
            steps=1,
            chooser=Greedy(),
            remasking=RandomRemasking(),
            eos_last=True,
        )
    with pytest.raises(ValueError, match=r"threshold.*\[0, 1\].*1.5"):
        make_remasking("threshold", threshold=1.5)
    with pytest.raises(ValueError, match="sigma"):
        make_remasking("remdm", sigma=1.0)
    with pytest.raises(ValueError, match="count"):
        make_remasking("remdm", count=-1)
    with pytest.raises(TypeError, match="tau"):
        make_remasking("threshold", tau=0.9)
    assert set(REMASKINGS) >= {"margin", "entropy", "threshold", "remdm"}


def test_factor_rule_commits_the_largest_safe_prefix_and_at_least_one() -> None:
    score = torch.tensor(
        [[0.99, 0.95, 0.6, 0.2], [0.3, 0.1, 0.2, 0.05], [0.99, 0.98, 0.97, float("-inf")]]
    )
    eligible = torch.tensor([[True] * 4, [True] * 4, [True, True, True, False]])
    planned = torch.tensor([1, 1, 1])
    # (n + 1)(1 - c_n) < f: row 0 at f=1: 0.02, 0.15 fit, 1.6 does not -> 2; f=2 -> 3.
    assert make_remasking("factor", factor=1.0).commit_count(score, eligible, planned).tolist() == [
        2,
        1,
        3,
    ]
    assert make_remasking("factor", factor=2.0).commit_count(score, eligible, planned).tolist() == [
        3,
        1,
        3,
    ]
    with pytest.raises(ValueError, match=r"remasking\.factor must be > 0"):
        make_remasking("factor", factor=0.0)


def test_adaptive_rules_report_each_samples_own_passes() -> None:
    """Row 0 is certain (one pass fills its block), row 1 is not (one token per pass): the
    batch takes 4 passes per block, row 0's own count is one per block."""
    table = torch.full((2, 8, 6), -20.0)
    table[0, torch.arange(8), torch.arange(8) % 6] = 20.0  # row 0: p(top1) ~ 1
    table[1] = 0.1 * torch.randn(8, 6, generator=torch.Generator().manual_seed(0))

    def model(canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        return table[: canvas.shape[0]]

    canvas = torch.full((2, 8), MASK)
    for name in ("threshold", "factor"):
        result = generate(
            model, canvas, MASK, steps=2, chooser=Greedy(), remasking=make_remasking(name),
            block_length=4,
        )  # fmt: skip
        assert result.nfe == 8 and result.row_nfe.tolist() == [2, 8], name
