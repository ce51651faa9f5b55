"""SFT loss (LLaDA eq. 5) and prompt dropping for classifier-free guidance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from llada.diffusion.schedules import FixedRatioSchedule, LinearSchedule
from llada.diffusion.sft import drop_prompt_for_cfg, sft_loss

VOCAB = 5
MASK_ID = 4  # tokens 0..3 are real, 4 is the mask
EOS = 3


class Recorder:
    """Context-free logits (a fixed table per position) that records every canvas it is given."""

    def __init__(self, table: Tensor) -> None:
        self.table, self.inputs, self.attention = table, [], []

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.inputs.append(input_ids.clone())
        self.attention.append(attention_mask)
        batch, length = input_ids.shape
        return self.table[:length].expand(batch, -1, -1).clone()  # (B, L, V)


class MaskAll(FixedRatioSchedule):
    """Masks every maskable token and weights the CE by a constant: makes the loss deterministic."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(ratio=1.0)
        self.constant = weight

    def loss_weight(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.constant)


def random_batch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random token ids (B, L) and a prompt mask of random per-row prompt length (0..L)."""
    batch = int(torch.randint(1, 7, (), generator=gen))
    length = int(torch.randint(2, 11, (), generator=gen))
    input_ids = torch.randint(0, MASK_ID, (batch, length), generator=gen)  # (B, L)
    prompt_len = torch.randint(0, length + 1, (batch,), generator=gen)  # (B,)
    prompt_mask = torch.arange(length)[None, :] < prompt_len[:, None]  # (B, L)
    return input_ids, prompt_mask


def test_prompt_tokens_are_never_masked() -> None:
    gen = torch.Generator().manual_seed(0)
    schedule = LinearSchedule(t_min=0.5)  # mask a lot, so a leak into the prompt would show
    table = torch.randn(10, VOCAB, generator=gen)
    n_masked = 0
    for _ in range(200):
        input_ids, prompt_mask = random_batch(gen)
        model = Recorder(table)
        loss = sft_loss(model, input_ids, prompt_mask, MASK_ID, schedule, generator=gen)
        assert torch.isfinite(loss)
        (noisy,) = model.inputs
        changed = noisy != input_ids  # (B, L)
        assert not bool((changed & prompt_mask).any())
        assert bool((noisy[changed] == MASK_ID).all())
        n_masked += int(changed.sum())
    assert n_masked > 500  # the property was exercised, not passed vacuously


def test_prompt_position_logits_do_not_change_the_loss() -> None:
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, MASK_ID, (4, 8), generator=gen)  # (B, L)
    prompt_mask = torch.arange(8)[None, :] < torch.tensor([[0], [2], [5], [7]])  # (B, L)
    table = torch.randn(8, VOCAB, generator=gen)
    noise = 10.0 * torch.randn(4, 8, VOCAB, generator=gen)  # (B, L, V)

    def edited(where: Tensor):
        def logits_fn(ids: Tensor, attention_mask: Tensor | None) -> Tensor:
            logits = table.expand(ids.shape[0], -1, -1)  # (B, L, V)
            return torch.where(where[..., None], logits + noise, logits)

        return logits_fn

    def loss_of(logits_fn) -> float:
        seeded = torch.Generator().manual_seed(7)
        return sft_loss(
            logits_fn, input_ids, prompt_mask, MASK_ID, LinearSchedule(), generator=seeded
        ).item()

    base = loss_of(edited(torch.zeros_like(prompt_mask)))
    assert loss_of(edited(prompt_mask)) == base
    assert loss_of(edited(~prompt_mask)) != pytest.approx(base)  # the response does count


def halving_table(length: int) -> Tensor:
    """Logits = log-probs where token j at position j has probability 2**-j (CE = j * log 2)."""
    table = torch.empty(length, VOCAB, dtype=torch.float64)
    for pos in range(length):
        p = 0.5**pos
        table[pos] = math.log((1 - p) / (VOCAB - 1)) if p < 1 else float("-inf")
        table[pos, pos] = math.log(p)
    return table


def test_each_row_is_normalised_by_its_own_response_length() -> None:
    input_ids = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])  # position j holds token j
    prompt_mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    model = Recorder(halving_table(4))
    loss = sft_loss(model, input_ids, prompt_mask, MASK_ID, MaskAll())
    # Row 0: response 1, 2, 3 with CE 1, 2, 3 (x log 2) over 3 tokens -> 2 log 2.
    # Row 1: response 3 with CE 3 log 2 over 1 token -> 3 log 2. Mean of rows: 2.5 log 2.
    # (Dividing the batch sum by all response tokens would give 9/4 log 2 instead.)
    assert loss.item() == pytest.approx(2.5 * math.log(2), rel=1e-6)
    weighted = sft_loss(Recorder(halving_table(4)), input_ids, prompt_mask, MASK_ID, MaskAll(3.0))
    assert weighted.item() == pytest.approx(3.0 * 2.5 * math.log(2), rel=1e-6)


def test_eos_padding_is_response_and_true_padding_is_not() -> None:
    input_ids = torch.tensor([[0, 1, 2, EOS, EOS, EOS]])  # prompt 0 1, answer 2, EOS padding
    prompt_mask = torch.tensor([[True, True, False, False, False, False]])
    # Log-probs per position: the answer token 2 has p = 3/4 at position 2, EOS has p = 1/4 everywhere.
    table = torch.full((6, VOCAB), -1e9, dtype=torch.float64)  # (L, V)
    table[:, EOS] = math.log(0.25)
    table[:, 0] = math.log(0.75)
    table[2, 0], table[2, 2] = -1e9, math.log(0.75)
    model = Recorder(table)
    loss = sft_loss(model, input_ids, prompt_mask, MASK_ID, MaskAll())
    (noisy,) = model.inputs
    assert noisy.tolist() == [[0, 1, MASK_ID, MASK_ID, MASK_ID, MASK_ID]]
    # Token 2: -log 0.75; three EOS: -log 0.25 each; four response tokens.
    expected = (-math.log(0.75) - 3 * math.log(0.25)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # The last position as true padding (attention 0): not masked, not scored, not counted.
    attention = torch.tensor([[1, 1, 1, 1, 1, 0]])
    model = Recorder(table)
    loss = sft_loss(model, input_ids, prompt_mask, MASK_ID, MaskAll(), attention_mask=attention)
    (noisy,) = model.inputs
    assert noisy.tolist() == [[0, 1, MASK_ID, MASK_ID, MASK_ID, EOS]]
    assert model.attention[0] is attention
    expected = (-math.log(0.75) - 2 * math.log(0.25)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("antithetic", [False, True])
def test_loss_is_unbiased_for_the_response_nll_of_a_context_free_model(antithetic: bool) -> None:
    """For a model that ignores context, E[w(t) * 1{masked}] = 1 under linear masking, so the expected
    loss is each row's mean response CE, averaged over rows."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(6, VOCAB, generator=gen)
    input_ids = torch.randint(0, MASK_ID, (2, 6), generator=gen).repeat(250, 1)  # (500, 6)
    prompt_mask = (torch.arange(6)[None, :] < torch.tensor([[1], [4]])).repeat(250, 1)
    ce = -table.log_softmax(-1).gather(1, input_ids[:2].T).T  # (2, 6) CE of each clean token
    expected = ((ce * ~prompt_mask[:2]).sum(1) / (~prompt_mask[:2]).sum(1)).mean().item()
    losses = torch.tensor(
        [
            sft_loss(
                Recorder(table), input_ids, prompt_mask, MASK_ID, LinearSchedule(),
                generator=gen, antithetic=antithetic,
            ).item()
            for _ in range(40)
        ]
    )  # fmt: skip
    stderr = losses.std().item() / math.sqrt(losses.numel())
    assert abs(losses.mean().item() - expected) < 4 * stderr


def test_drop_prompt_for_cfg_masks_whole_prompts_only() -> None:
    gen = torch.Generator().manual_seed(4)
    input_ids = torch.randint(0, MASK_ID, (2000, 7), generator=gen)  # (B, L)
    prompt_len = torch.randint(1, 7, (2000,), generator=gen)
    prompt_mask = torch.arange(7)[None, :] < prompt_len[:, None]  # (B, L)
    before = input_ids.clone()

    always = drop_prompt_for_cfg(input_ids, prompt_mask, MASK_ID, 1.0, generator=gen)
    assert bool((always[prompt_mask] == MASK_ID).all())
    assert torch.equal(always[~prompt_mask], input_ids[~prompt_mask])

    never = drop_prompt_for_cfg(input_ids, prompt_mask, MASK_ID, 0.0, generator=gen)
    assert torch.equal(never, input_ids)

    half = drop_prompt_for_cfg(input_ids, prompt_mask, MASK_ID, 0.5, generator=gen)
    assert torch.equal(half[~prompt_mask], input_ids[~prompt_mask])
    erased = (half == MASK_ID) & prompt_mask  # (B, L)
    dropped = erased.any(1)  # (B,)
    assert torch.equal(erased.sum(1), torch.where(dropped, prompt_len, 0))  # all or nothing
    assert abs(dropped.double().mean().item() - 0.5) < 0.05
    assert torch.equal(input_ids, before)  # not modified in place

    with pytest.raises(ValueError, match="p_uncond"):
        drop_prompt_for_cfg(input_ids, prompt_mask, MASK_ID, 1.5)


def test_dropped_prompt_is_still_not_scored() -> None:
    input_ids = torch.tensor([[0, 1, 2, 3]])
    prompt_mask = torch.tensor([[True, True, False, False]])
    dropped = drop_prompt_for_cfg(input_ids, prompt_mask, MASK_ID, 1.0)
    model = Recorder(halving_table(4))
    loss = sft_loss(model, dropped, prompt_mask, MASK_ID, MaskAll())
    assert model.inputs[0].tolist() == [[MASK_ID] * 4]
    assert loss.item() == pytest.approx(2.5 * math.log(2), rel=1e-6)  # CE 2 and 3 over 2 tokens
