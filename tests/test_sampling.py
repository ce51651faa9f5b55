"""Reverse process, token choice and remasking against tiny deterministic "models"."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from llada.diffusion.remasking import (
    LowConfidenceRemasking,
    RandomRemasking,
    make_remasking,
)
from llada.diffusion.sampling import block_plan, commit_top_k, generate, tokens_per_step
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
    with pytest.raises(ValueError, match=r"margin.*random.*low_confidence"):
        make_remasking("margin")
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
