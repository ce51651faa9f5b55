"""Reverse process, token choice and remasking against tiny deterministic "models"."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from llada.diffusion.remasking import (
    LowConfidenceRemasking,
    RandomRemasking,
    ThresholdRemasking,
    make_remasking,
)
from llada.diffusion.sampling import (
    GenerationResult,
    block_plan,
    commit_top_k,
    generate,
    schedule_tokens_per_step,
    tokens_per_step,
)
from llada.diffusion.schedules import CosineSchedule, PowerSchedule
from llada.diffusion.token_choice import Greedy, Multinomial, make_token_chooser

MASK = 99  # outside the toy vocabularies, so a committed token is never the mask id


class TableModel:
    """Context-free model: fixed random logits per position; records every call it gets."""

    def __init__(self, length: int, vocab: int, seed: int = 0, scale: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.table = scale * torch.randn(length, vocab, generator=gen)  # (L, V)
        self.canvases: list[Tensor] = []
        self.masks: list[Tensor | None] = []

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.canvases.append(canvas.clone())
        self.masks.append(attention_mask)
        return self.table.expand(canvas.shape[0], -1, -1)  # (B, L, V)


def masked_canvas(batch: int, length: int, prompt: int) -> Tensor:
    canvas = torch.full((batch, length), MASK)
    canvas[:, :prompt] = torch.arange(prompt) % 7
    return canvas


def test_tokens_per_step_matches_llada_rule() -> None:
    n_masked = torch.arange(0, 23)  # (B,)
    for steps in range(1, 8):
        k = tokens_per_step(n_masked, steps)
        assert k.shape == (23, steps) and k.dtype == torch.long
        assert torch.equal(k.sum(dim=1), n_masked)
        for row, m in enumerate(n_masked.tolist()):
            expected = [m // steps + (1 if s < m % steps else 0) for s in range(steps)]
            assert k[row].tolist() == expected


def test_greedy_fills_every_mask_with_argmax_and_is_deterministic() -> None:
    model = TableModel(length=12, vocab=11)
    canvas = masked_canvas(batch=2, length=12, prompt=4)
    runs = [
        generate(model, canvas, MASK, steps=4, chooser=Greedy(), remasking=LowConfidenceRemasking())
        for _ in range(2)
    ]
    out = runs[0].tokens
    assert not (out == MASK).any()
    assert torch.equal(out[:, 4:], model.table.argmax(-1)[4:].expand(2, -1))
    assert torch.equal(out, runs[1].tokens)
    assert torch.equal(canvas[:, 4:], torch.full((2, 8), MASK))  # input left untouched


def test_multinomial_seed_reproducible_and_seeds_differ() -> None:
    model = TableModel(length=24, vocab=40, scale=0.1)
    canvas = masked_canvas(batch=2, length=24, prompt=0)

    def run(seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        chooser = Multinomial(temperature=1.0)
        return generate(
            model,
            canvas,
            MASK,
            steps=6,
            chooser=chooser,
            remasking=RandomRemasking(),
            generator=gen,
        ).tokens

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert not (run(3) == MASK).any()


def test_filters_that_keep_one_token_equal_greedy() -> None:
    logits = torch.randn(3, 7, 30, generator=torch.Generator().manual_seed(0))
    greedy = Greedy().choose(logits)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(Multinomial(top_k=1).choose(logits, gen), greedy)
    assert torch.equal(Multinomial(top_p=1e-6).choose(logits, gen), greedy)
    assert torch.equal(Multinomial(temperature=0.0).choose(logits, gen), greedy)
    assert torch.equal(Multinomial(temperature=1e-4).choose(logits, gen), greedy)


def test_gumbel_frequencies_match_tempered_softmax() -> None:
    base = torch.tensor([1.0, 0.2, -0.5, 0.7, 0.0])
    draws = 20_000
    logits = base.expand(1, draws, 5)  # (1, N, V)
    gen = torch.Generator().manual_seed(0)
    tokens = Multinomial(temperature=0.7).choose(logits, gen)
    freq = torch.bincount(tokens.flatten(), minlength=5).double() / draws
    expected = (base.double() / 0.7).softmax(-1)
    assert (freq - expected).abs().max() < 0.015  # ~4 standard errors


def test_top_k_and_top_p_renormalise_over_kept_tokens() -> None:
    base = torch.tensor([2.0, 1.5, 0.0, -1.0, 1.0])  # probs ~ .46 .28 .06 .02 .17
    logits = base.expand(1, 20_000, 5)
    gen = torch.Generator().manual_seed(1)
    for chooser, kept in [
        (Multinomial(top_k=2), [0, 1]),
        (Multinomial(top_p=0.7), [0, 1]),  # mass before token 1 is 0.46 < 0.7, before token 4 0.74
        (Multinomial(top_k=3, top_p=0.99), [0, 1, 4]),
    ]:
        tokens = chooser.choose(logits, gen).flatten()
        freq = torch.bincount(tokens, minlength=5).double() / tokens.numel()
        expected = torch.zeros(5, dtype=torch.float64)
        expected[kept] = base[kept].double().softmax(-1)
        assert (freq - expected).abs().max() < 0.015


def test_low_confidence_commits_most_confident_position_first() -> None:
    length, vocab = 6, 8
    calls: list[Tensor] = []

    def rising(canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        calls.append(canvas.clone())
        logits = torch.zeros(canvas.shape[0], length, vocab)
        pos = torch.arange(length)
        logits[:, pos, pos % vocab] = pos.float()  # confidence of the argmax rises with position
        return logits

    canvas = torch.full((1, length), MASK)
    out = generate(
        rising, canvas, MASK, steps=length, chooser=Greedy(), remasking=LowConfidenceRemasking()
    ).tokens
    trajectory = [*calls[1:], out]
    order = []
    for before, after in zip(calls, trajectory, strict=True):
        new = ((before == MASK) & (after != MASK))[0].nonzero().flatten().tolist()
        assert len(new) == 1
        order += new
    assert order == list(reversed(range(length)))


def test_block_decoding_finishes_each_block_before_the_next() -> None:
    model = TableModel(length=10, vocab=9)
    canvas = masked_canvas(batch=3, length=10, prompt=2)
    gen = torch.Generator().manual_seed(0)
    result = generate(
        model,
        canvas,
        MASK,
        steps=8,
        chooser=Multinomial(),
        remasking=RandomRemasking(),
        block_length=2,
        gen_start=2,
        generator=gen,
    )
    assert result.nfe == 8
    states = [*model.canvases, result.tokens]
    for index, state in enumerate(states):
        filled = (state != MASK)[:, 2:].view(3, 4, 2).all(-1)  # (B, blocks)
        touched = (state != MASK)[:, 2:].view(3, 4, 2).any(-1)
        done_blocks = index // 2  # 2 steps per block
        assert filled[:, :done_blocks].all()
        assert not touched[:, done_blocks + 1 :].any()
    # One commit per step: block of 2 masks over 2 steps.
    counts = [(s == MASK).sum().item() for s in states]
    assert counts == [3 * (8 - i) for i in range(9)]


def test_per_row_commit_counts_follow_tokens_per_step() -> None:
    model = TableModel(length=8, vocab=9)
    canvas = torch.full((2, 8), MASK)
    canvas[1, [1, 3, 4, 6, 7]] = 5  # row 1 has only 3 masks: a partially given answer
    result = generate(
        model, canvas, MASK, steps=4, chooser=Greedy(), remasking=LowConfidenceRemasking()
    )
    states = [*model.canvases, result.tokens]
    masks = torch.stack([(s == MASK).sum(1) for s in states])  # (steps + 1, B)
    committed = (masks[:-1] - masks[1:]).T  # (B, steps)
    assert torch.equal(committed, tokens_per_step(torch.tensor([8, 3]), 4))
    assert torch.equal(result.tokens[1, [1, 3, 4, 6, 7]], torch.full((5,), 5))


def test_nfe_counts_passes_and_full_blocks_cost_none() -> None:
    model = TableModel(length=6, vocab=4)
    canvas = masked_canvas(batch=1, length=6, prompt=2)  # 4 masks
    result = generate(model, canvas, MASK, steps=4, chooser=Greedy(), remasking=RandomRemasking())
    assert result.nfe == 4 == len(model.canvases)
    # More steps than masks: one commit per pass, then the full block costs nothing more.
    model = TableModel(length=6, vocab=4)
    result = generate(model, canvas, MASK, steps=8, chooser=Greedy(), remasking=RandomRemasking())
    assert result.nfe == 4 == len(model.canvases)
    assert not (result.tokens == MASK).any() and result.seconds >= 0.0
    # A region with nothing to fill runs no forward pass at all.
    model = TableModel(length=6, vocab=4)
    full = torch.zeros(1, 6, dtype=torch.long)
    result = generate(model, full, MASK, steps=2, chooser=Greedy(), remasking=RandomRemasking())
    assert result.nfe == 0 and torch.equal(result.tokens, full)


def test_commit_top_k_per_row_counts_and_ties_by_position() -> None:
    scores = torch.tensor([[0.5, 0.5, float("-inf"), 0.9], [0.1, 0.3, 0.2, 0.0]])
    chosen = commit_top_k(scores, torch.tensor([2, 3]))
    assert chosen.tolist() == [[True, False, False, True], [True, True, True, False]]


def test_mask_id_inside_vocab_is_never_committed() -> None:
    mask_id = 0

    def loves_mask(canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        logits = torch.zeros(*canvas.shape, 5)  # (B, L, V)
        logits[..., mask_id] = 50.0
        return logits

    canvas = torch.full((2, 4), mask_id)
    for chooser in (Greedy(), Multinomial()):
        out = generate(
            loves_mask,
            canvas,
            mask_id,
            steps=2,
            chooser=chooser,
            remasking=LowConfidenceRemasking(),
            generator=torch.Generator().manual_seed(0),
        ).tokens
        assert not (out == mask_id).any()


def test_prompt_suffix_and_masks_before_region_are_untouched() -> None:
    model = TableModel(length=10, vocab=6)
    canvas = torch.tensor([[MASK, 1, 2, MASK, MASK, 3, MASK, MASK, 4, 5]])
    attention = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    result = generate(
        model,
        canvas,
        MASK,
        steps=2,
        chooser=Multinomial(),
        remasking=RandomRemasking(),
        attention_mask=attention,
        gen_start=3,
        generator=torch.Generator().manual_seed(0),
    )
    out = result.tokens
    given = canvas != MASK
    assert torch.equal(out[given], canvas[given])
    assert out[0, 0] == MASK  # mask outside the generation region stays
    assert not (out[0, 3:] == MASK).any()
    assert all(mask is attention for mask in model.masks)


@pytest.mark.parametrize(
    ("steps", "block_length", "gen_start"),
    [(2, 3, 0), (3, 2, 0), (0, None, 0), (4, None, 8), (4, 0, 0), (2, 2, 2)],
)
def test_bad_step_and_block_combinations_raise(
    steps: int, block_length: int | None, gen_start: int
) -> None:
    model = TableModel(length=8, vocab=4)
    with pytest.raises(ValueError):
        generate(
            model,
            torch.full((1, 8), MASK),
            MASK,
            steps=steps,
            chooser=Greedy(),
            remasking=RandomRemasking(),
            block_length=block_length,
            gen_start=gen_start,
        )
    assert model.canvases == []


def test_remasking_scores() -> None:
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(1))
    score = LowConfidenceRemasking().confidence(logits, tokens)
    assert score.dtype == torch.float32 and score.shape == (2, 5)
    assert torch.allclose(score, logits.softmax(-1).gather(-1, tokens[..., None])[..., 0])
    first = RandomRemasking().confidence(logits, tokens, torch.Generator().manual_seed(3))
    again = RandomRemasking().confidence(logits, tokens, torch.Generator().manual_seed(3))
    assert first.dtype == torch.float32 and torch.equal(first, again)


def test_factories_and_unknown_names() -> None:
    assert isinstance(make_token_chooser("greedy", temperature=0.7, top_k=None, top_p=None), Greedy)
    chooser = make_token_chooser("multinomial", temperature=0.5, top_k=3)
    assert isinstance(chooser, Multinomial) and chooser.top_k == 3
    assert isinstance(make_remasking("low_confidence"), LowConfidenceRemasking)
    with pytest.raises(ValueError, match=r"beam.*greedy.*multinomial"):
        make_token_chooser("beam")
    with pytest.raises(ValueError, match=r"beam.*random.*low_confidence.*margin.*threshold.*remdm"):
        make_remasking("beam")
    with pytest.raises(TypeError, match="beams"):
        make_token_chooser("greedy", beams=2)
    with pytest.raises(TypeError, match="tau"):
        make_remasking("random", tau=0.9)


@pytest.mark.parametrize(
    ("length", "gen_start", "steps", "block_length", "expected"),
    [
        (8, 0, 4, 4, [(0, 4, 2), (4, 8, 2)]),  # LLaDA's even plan
        (8, 0, 5, 3, [(0, 3, 2), (3, 6, 2), (6, 8, 1)]),  # short last block, uneven steps
        (10, 4, 3, None, [(4, 10, 3)]),
    ],
)
def test_block_plan_covers_region_once(length, gen_start, steps, block_length, expected) -> None:
    plan = block_plan(length, gen_start, steps, block_length)
    assert plan == expected
    assert sum(n for _, _, n in plan) == steps


def test_uneven_blocks_fill_every_mask() -> None:
    model = TableModel(length=10, vocab=4)
    out = generate(
        model,
        torch.full((1, 10), MASK),
        MASK,
        steps=7,
        chooser=Greedy(),
        remasking=RandomRemasking(),
        block_length=4,
    ).tokens
    assert not (out == MASK).any()


def test_schedule_tokens_per_step_hand_examples() -> None:
    linear = schedule_tokens_per_step(torch.tensor([5]), 3, lambda t: t)
    assert linear.tolist() == [[2, 2, 1]]  # 5 * 1/3 -> 2, 3 * 1/2 -> 2, the rest
    # Cosine, 2 steps: m(1/2) = 1 - cos(pi/4) ~ 0.293, so 10 * 0.707 -> 7 first.
    cosine = schedule_tokens_per_step(
        torch.tensor([10]), 2, lambda t: 1 - torch.cos(math.pi / 2 * t)
    )
    assert cosine.tolist() == [[7, 3]]
    # t**2, 3 steps: 9 * (1 - 4/9) = 5, then 4 * (1 - 1/4) = 3, then 1.
    square = schedule_tokens_per_step(torch.tensor([9]), 3, lambda t: t**2)
    assert square.tolist() == [[5, 3, 1]]


@pytest.mark.parametrize(
    "mask_prob",
    [
        lambda t: t,
        CosineSchedule().mask_prob,
        PowerSchedule(k=3.0).mask_prob,
        PowerSchedule(k=0.5, eps=0.0).mask_prob,
        lambda t: torch.ones_like(t),  # flat: everything waits for the last step
    ],
)
def test_schedule_tokens_per_step_sums_and_never_skips_the_last_step(mask_prob) -> None:
    n_masked = torch.arange(0, 70)  # (B,)
    for steps in (1, 2, 3, 7, 16):
        k = schedule_tokens_per_step(n_masked, steps, mask_prob)
        assert k.shape == (70, steps) and k.dtype == torch.long
        assert (k >= 0).all() and torch.equal(k.sum(dim=1), n_masked)
        assert (k[1:, -1] >= 1).all()  # every row with masks commits at the last step


def test_schedule_tokens_per_step_is_the_linear_rule_within_rounding() -> None:
    n_masked = torch.arange(0, 200)
    for steps in range(1, 17):
        k = schedule_tokens_per_step(n_masked, steps, lambda t: t)
        linear = tokens_per_step(n_masked, steps)
        assert (k - linear).abs().max() <= 1
        exact = n_masked[:, None] * torch.arange(1, steps + 1) / steps  # (B, S) ideal cumulative
        assert (k.cumsum(dim=1) - exact).abs().max() <= 2.5


def test_cosine_schedule_commits_more_early_than_late() -> None:
    k = schedule_tokens_per_step(torch.tensor([64]), 8, CosineSchedule().mask_prob)[0]
    assert k[0] > k[-2] and k.tolist() == sorted(k.tolist(), reverse=True)


def test_generate_follows_the_schedule_per_row() -> None:
    model = TableModel(length=12, vocab=9)
    canvas = torch.full((2, 12), MASK)
    canvas[1, ::3] = 4  # row 1: 8 masks, row 0: 12
    mask_prob = PowerSchedule(k=2.0).mask_prob
    result = generate(
        model,
        canvas,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        mask_prob=mask_prob,
        record=True,
    )
    masks = torch.stack([(s == MASK).sum(1) for s in [canvas, *result.trajectory]])  # (S+1, B)
    committed = (masks[:-1] - masks[1:]).T  # (B, S)
    assert torch.equal(committed, schedule_tokens_per_step(torch.tensor([12, 8]), 4, mask_prob))
    assert not torch.equal(committed, tokens_per_step(torch.tensor([12, 8]), 4))


def test_steps_that_commit_nothing_reuse_logits() -> None:
    # m = 1 until t = 1/2: the first two of four steps commit nothing, so only the first and the
    # last step run the model; the two idle steps reuse the first step's logits.
    model = TableModel(length=8, vocab=5)

    def late(t: Tensor) -> Tensor:
        return torch.where(t >= 0.5, torch.ones_like(t), 2 * t)

    result = generate(
        model,
        torch.full((1, 8), MASK),
        MASK,
        steps=4,
        chooser=Multinomial(),
        remasking=RandomRemasking(),
        mask_prob=late,
        generator=torch.Generator().manual_seed(0),
        record=True,
    )
    assert len(result.trajectory) == 4
    assert result.nfe == 2 == len(model.canvases)
    assert [int((s == MASK).sum()) for s in result.trajectory] == [8, 8, 4, 0]
    assert not (result.tokens == MASK).any()


class Hesitant(LowConfidenceRemasking):
    """Commits nothing on every other step: a strategy-made idle step."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def commit_count(self, score: Tensor, eligible: Tensor, planned_k: Tensor) -> Tensor:
        self.calls += 1
        return planned_k if self.calls % 2 == 0 else torch.zeros_like(planned_k)


def test_idle_strategy_steps_reuse_logits_and_overtime_finishes() -> None:
    model = TableModel(length=6, vocab=5)
    result = generate(
        model,
        torch.full((2, 6), MASK),
        MASK,
        steps=6,
        chooser=Greedy(),
        remasking=Hesitant(),
        record=True,
    )
    assert not (result.tokens == MASK).any()
    states = [torch.full((2, 6), MASK), *result.trajectory]
    changed = sum(not torch.equal(a, b) for a, b in itertools.pairwise(states))
    assert result.nfe == len(model.canvases) == changed < len(result.trajectory)
    for first, second in itertools.pairwise(model.canvases):
        assert not torch.equal(first, second)  # never two passes over the same canvas


class Stubborn(LowConfidenceRemasking):
    """Never wants to commit: generate must still finish the block (one commit per extra step)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def commit_count(self, score: Tensor, eligible: Tensor, planned_k: Tensor) -> Tensor:
        self.calls += 1
        if self.calls > 100:
            raise RuntimeError("generate keeps stepping without progress")
        return torch.zeros_like(planned_k)


def test_steps_past_the_plan_always_make_progress() -> None:
    model = TableModel(length=4, vocab=5)
    result = generate(
        model,
        torch.full((1, 4), MASK),
        MASK,
        steps=2,
        chooser=Greedy(),
        remasking=Stubborn(),
        record=True,
    )
    assert not (result.tokens == MASK).any()
    assert [int((s == MASK).sum()) for s in result.trajectory] == [4, 4, 3, 2, 1, 0]
    assert result.nfe == 4  # the two idle planned steps and the first extra one share logits


def test_trajectory_has_one_monotone_canvas_per_step() -> None:
    model = TableModel(length=10, vocab=6)
    canvas = masked_canvas(batch=2, length=10, prompt=2)
    result = generate(
        model,
        canvas,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        block_length=4,
        gen_start=2,
        record=True,
    )
    assert len(result.trajectory) == len(result.confidences) == 4 == result.nfe
    assert torch.equal(result.trajectory[-1], result.tokens)
    previous = canvas
    for state, confidence in zip(result.trajectory, result.confidences, strict=True):
        assert state.shape == confidence.shape == (2, 10) and state.device.type == "cpu"
        assert confidence.dtype == torch.float32
        kept = previous != MASK
        assert torch.equal(state[kept], previous[kept])  # committed tokens never change
        assert (state == MASK).sum() < (previous == MASK).sum()
        predicted = ~torch.isnan(confidence)
        assert (previous[predicted] == MASK).all()  # scores only where something was predicted
        assert ((confidence[predicted] > 0) & (confidence[predicted] <= 1)).all()
        previous = state
    assert torch.isnan(result.confidences[0][:, 6:]).all()  # second block not predicted yet
    plain = generate(model, canvas, MASK, steps=4, chooser=Greedy(), remasking=RandomRemasking())
    assert plain.trajectory == [] and plain.confidences == []


def test_generation_result_keeps_its_old_constructor() -> None:
    result = GenerationResult(torch.zeros(1, 2), 3, 0.5)
    assert result.trajectory == [] and result.confidences == []
    assert GenerationResult(torch.zeros(1, 2), 1, 0.0).trajectory is not result.trajectory


def test_greedy_is_identical_with_and_without_logits_reuse() -> None:
    """A cosine step plan has idle steps (k=0); they reuse logits, and skipping that changes nothing."""
    common = {
        "steps": 12, "chooser": Greedy(), "remasking": LowConfidenceRemasking(),
        "mask_prob": CosineSchedule().mask_prob,
    }  # fmt: skip
    reused, fresh = TableModel(4, 6), TableModel(4, 6)
    with_reuse = generate(reused, torch.full((2, 4), MASK), MASK, **common)
    without = generate(fresh, torch.full((2, 4), MASK), MASK, reuse_logits=False, **common)
    assert torch.equal(with_reuse.tokens, without.tokens)
    assert with_reuse.nfe < without.nfe


def test_random_remasking_does_not_follow_confidence_order() -> None:
    """Confidence rises with position; low_confidence fills right to left, random does not."""
    table = torch.zeros(12, 5)
    table[torch.arange(12), torch.arange(12) % 5] = torch.arange(12, dtype=torch.float) + 1.0

    def orders(remasking) -> list[int]:
        canvases: list[Tensor] = []

        def rising(canvas: Tensor, _: Tensor | None) -> Tensor:
            canvases.append(canvas.clone())
            return table.expand(canvas.shape[0], -1, -1)

        out = generate(
            rising, torch.full((1, 12), MASK), MASK, steps=12, chooser=Greedy(),
            remasking=remasking, generator=torch.Generator().manual_seed(0),
        ).tokens  # fmt: skip
        states = [*canvases, out]
        return [int((a[0] == MASK).nonzero()[((b[0] != MASK) & (a[0] == MASK))[a[0] == MASK]][0])
                for a, b in itertools.pairwise(states)]  # fmt: skip

    assert orders(LowConfidenceRemasking()) == list(range(11, -1, -1))
    assert orders(RandomRemasking()) != list(range(11, -1, -1))


def test_threshold_one_degrades_to_one_token_per_step() -> None:
    model = TableModel(8, 6, scale=0.1)  # never fully confident
    out = generate(
        model, torch.full((1, 8), MASK), MASK, steps=2, chooser=Greedy(),
        remasking=ThresholdRemasking(threshold=1.0), record=True,
    )  # fmt: skip
    assert out.nfe == 8  # one committed token per forward pass
    masks = [int((canvas == MASK).sum()) for canvas in out.trajectory]
    assert masks == list(range(7, -1, -1))
