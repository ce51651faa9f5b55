"""Supervised fine-tuning loss (LLaDA eq. 5): diffuse only the response, keep the prompt clean.

The prompt is the condition, so it is never masked and never scored. The response is padded with EOS to
the sequence length and those EOS count as response tokens: predicting them teaches the model to stop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llada.diffusion.losses import masked_token_nll
from llada.diffusion.noising import noise_batch
from llada.diffusion.sampling import LogitsFn
from llada.diffusion.schedules import MaskingSchedule


def response_positions(prompt_mask: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Positions that belong to the response: not prompt and not padding. (B, L) bool.

    EOS padding of the response is attended (attention_mask 1), so it is response; only true padding
    (attention_mask 0, e.g. left padding of a batch) is left out.
    """
    response = ~prompt_mask.bool()  # (B, L)
    if attention_mask is not None:
        response &= attention_mask.bool()
    return response


def sft_loss(
    logits_fn: LogitsFn,
    input_ids: Tensor,
    prompt_mask: Tensor,
    mask_id: int,
    schedule: MaskingSchedule,
    *,
    attention_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    antithetic: bool = False,
) -> Tensor:
    """LLaDA SFT loss: per-row sum of w(t) * CE over masked response tokens / response length, row mean.

    input_ids (B, L), prompt_mask (B, L) bool (True on prompt tokens), attention_mask (B, L) or None.
    Dividing each row by its own response length (not by B * L) makes it the response's per-token ELBO,
    so short and long answers weigh the same. A row without response tokens contributes 0.
    Returns a scalar float32 tensor.
    """
    response = response_positions(prompt_mask, attention_mask)  # (B, L)
    noisy, masked, t = noise_batch(
        input_ids,
        schedule,
        mask_id,
        maskable=response,
        antithetic=antithetic,
        generator=generator,
    )  # (B, L), (B, L), (B,)
    logits = logits_fn(noisy, attention_mask)  # (B, L, V)
    nll = masked_token_nll(logits, input_ids, masked)  # (B, L), 0 off the masked response
    weight = schedule.loss_weight(t).to(nll.dtype)  # (B,)
    response_len = response.sum(dim=1).clamp_min(1).to(nll.dtype)  # (B,)
    per_row = (nll * weight[:, None]).sum(dim=1) / response_len  # (B,)
    return per_row.mean()


def drop_prompt_for_cfg(
    input_ids: Tensor,
    prompt_mask: Tensor,
    mask_id: int,
    p_uncond: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Classifier-free guidance training: with probability p_uncond per row, mask the whole prompt.

    The model then also learns p(response | no prompt), the unconditional branch that CFG sampling
    contrasts with the conditional one. prompt_mask is unchanged, so the masked prompt is still never
    scored by `sft_loss`. Returns new input_ids (B, L); the input is not modified.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    draws = torch.rand(input_ids.shape[0], generator=generator, device=input_ids.device)  # (B,)
    dropped = draws < p_uncond  # (B,) rand is in [0, 1), so p=1 drops every row and p=0 none
    erase = dropped[:, None] & prompt_mask.bool()  # (B, L)
    return torch.where(erase, torch.full_like(input_ids, mask_id), input_ids)
