"""Forward process: draw noise levels and mask tokens."""

from __future__ import annotations

import torch
from torch import Tensor

from llada.diffusion.schedules import MaskingSchedule


def sample_times(
    batch_size: int,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
    antithetic: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Noise levels t (B,) in [t_min, t_max].

    Antithetic (low-discrepancy) sampling uses one u and t_i = (u + i/B) mod 1: same expectation, lower
    gradient variance.
    """
    if antithetic:
        u = torch.rand(1, generator=generator, device=device)
        offsets = torch.arange(batch_size, device=device, dtype=torch.float32) / batch_size
        unit = (u + offsets) % 1.0  # (B,)
    else:
        unit = torch.rand(batch_size, generator=generator, device=device)  # (B,)
    return t_min + (t_max - t_min) * unit


def mask_tokens(
    input_ids: Tensor,
    mask_prob: Tensor,
    mask_id: int,
    *,
    maskable: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask each maskable token independently with its row's probability.

    input_ids (B, L), mask_prob (B,), maskable (B, L) bool (False for padding / prompt tokens).
    Returns (noisy_ids (B, L), masked (B, L) bool).
    """
    draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)  # (B, L)
    masked = draws < mask_prob[:, None]  # (B, L)
    if maskable is not None:
        masked &= maskable
    noisy = torch.where(masked, torch.full_like(input_ids, mask_id), input_ids)
    return noisy, masked


def noise_batch(
    input_ids: Tensor,
    schedule: MaskingSchedule,
    mask_id: int,
    *,
    maskable: Tensor | None = None,
    antithetic: bool = False,
    full_range: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw t per row and mask under `schedule`. Returns (noisy (B, L), masked (B, L), t (B,)).

    Training draws t in the schedule's [t_min, t_max]; `full_range` draws t in [0, 1], which the
    ELBO needs to be a bound (validation), whatever range training used.
    """
    t_min, t_max = (0.0, 1.0) if full_range else (schedule.t_min, schedule.t_max)
    t = sample_times(
        input_ids.shape[0],
        t_min=t_min,
        t_max=t_max,
        antithetic=antithetic,
        generator=generator,
        device=input_ids.device,
    )
    noisy, masked = mask_tokens(
        input_ids, schedule.mask_prob(t), mask_id, maskable=maskable, generator=generator
    )
    return noisy, masked, t
