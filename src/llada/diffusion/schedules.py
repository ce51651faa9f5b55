"""Masking schedules of the forward process: mask probability m(t) and ELBO weight w(t) = m'(t)/m(t).

Each schedule is a small class so a new one is a new class plus a `conf/masking/*.yaml` file.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class MaskingSchedule:
    """m(t) = (1 - eps) * shape(t) + eps, so the mask probability is never exactly zero."""

    is_elbo: bool = True

    def __init__(self, eps: float = 1e-3, t_min: float = 0.0, t_max: float = 1.0) -> None:
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(
                f"masking needs 0 <= t_min < t_max <= 1, got t_min={t_min} t_max={t_max}"
            )
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"masking.eps must be in [0, 1), got {eps}")
        self.eps, self.t_min, self.t_max = eps, t_min, t_max

    def shape(self, t: Tensor) -> Tensor:
        """The schedule's own curve on [0, 1] with shape(1) = 1."""
        raise NotImplementedError

    def shape_derivative(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def mask_prob(self, t: Tensor) -> Tensor:
        """m(t): probability that a token is masked at noise level t."""
        return (1.0 - self.eps) * self.shape(t) + self.eps

    def weight(self, t: Tensor) -> Tensor:
        """w(t) = m'(t) / m(t): the continuous-time ELBO weight of the masked-token CE."""
        return (1.0 - self.eps) * self.shape_derivative(t) / self.mask_prob(t)

    def loss_weight(self, t: Tensor) -> Tensor:
        """Weight that turns masked CE into the ELBO integrand.

        For linear masking this is LLaDA's 1/m(t) (the paper's 1/t): with t ~ U(0,1) the estimator is
        unbiased because E_t[1/m(t)] over U(0,1) pairs with the uniform density. For other shapes the
        change of variables gives w(t) = m'(t)/m(t).
        """
        return self.weight(t)

    def options(self) -> dict[str, float]:
        """Constructor arguments, so a checkpoint can rebuild the schedule."""
        return {"eps": self.eps, "t_min": self.t_min, "t_max": self.t_max}

    def recipe(self) -> dict[str, object]:
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.options()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


class LinearSchedule(MaskingSchedule):
    """LLaDA / MDLM log-linear: m(t) = t, weight 1/t."""

    def shape(self, t: Tensor) -> Tensor:
        return t

    def shape_derivative(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def loss_weight(self, t: Tensor) -> Tensor:
        # LLaDA divides by the mask probability itself (paper eq. 3), not by (1 - eps) * ... / m.
        return 1.0 / self.mask_prob(t)


class CosineSchedule(MaskingSchedule):
    """m(t) = 1 - cos(pi/2 * t): fewer masks at small t than linear."""

    def shape(self, t: Tensor) -> Tensor:
        return 1.0 - torch.cos(0.5 * math.pi * t)

    def shape_derivative(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class PowerSchedule(MaskingSchedule):
    """m(t) = t**k."""

    def __init__(self, k: float = 2.0, **kwargs: float) -> None:
        super().__init__(**kwargs)
        if k <= 0:
            raise ValueError(f"masking.k must be > 0, got {k}")
        self.k = k

    def options(self) -> dict[str, float]:
        return {**super().options(), "k": self.k}

    def shape(self, t: Tensor) -> Tensor:
        return t**self.k

    def shape_derivative(self, t: Tensor) -> Tensor:
        return self.k * t ** (self.k - 1)


class FixedRatioSchedule(MaskingSchedule):
    """BERT-style baseline: always mask a fraction r. Not a diffusion ELBO (weight 1)."""

    is_elbo = False

    def __init__(self, ratio: float = 0.15, **kwargs: float) -> None:
        super().__init__(**kwargs)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"masking.ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio

    def options(self) -> dict[str, float]:
        return {**super().options(), "ratio": self.ratio}

    def mask_prob(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.ratio)

    def loss_weight(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)
