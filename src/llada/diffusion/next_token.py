"""`objective=ar`: next-token prediction with a causal backbone, the autoregressive baseline.

The same network with a causal mask (`model=ar_tiny`), trained by the same entry on the same data.
Every sequence is scored from a start token (EOS, the packing separator), so an AR and an MDM are
scored on exactly the same tokens, and its perplexity is exact. Decoding is left to right: each
masked column is filled from everything to its left, one forward pass per column.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from llada.diffusion.losses import masked_nll_per_row
from llada.diffusion.objective import Batch, Objective, RowNLL, TrainingLoss, logits_at
from llada.diffusion.sampling import GenerationResult, LogitsFn
from llada.diffusion.token_choice import TokenChooser, forbid_tokens


class NextToken(Objective):
    """Exact next-token likelihood: `-log p(x) = -sum_i log p(x_i | start, x_<i)`."""

    lm_kind = "autoregressive"
    attention = "causal"
    exact = True
    prefix_cache = False  # one pass per column: nothing to reuse (`kv_cache` is ignored)

    def __init__(self, **ids_and_schedule: Any) -> None:
        super().__init__(**ids_and_schedule)
        if self.eos_id is None:
            raise ValueError("objective=ar needs an EOS token as its start token")
        self.start_id = int(self.eos_id)

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """Every sequence starts with the start token, so the first real token is scored too."""
        return (self.start_id,)

    def scored_length(self, context: int | None) -> int | None:
        """One more than the context: the last answer token is never an input."""
        return None if context is None else context + 1

    def check_generation(self, cfg_scale: float) -> None:
        if cfg_scale > 0:
            raise ValueError(
                "sampler.cfg_scale > 0 is classifier-free guidance for diffusion sampling; "
                "set it to 0 for an autoregressive model"
            )

    # ---------------------------------------------------------------- training
    def row_nll(
        self,
        backbone: LogitsFn,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        prompt_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exact -log p per row and its scored tokens: (row_nll (B,), scored (B,) float).

        Inputs are [start, x_0 .. x_{L-2}] predicting x_0 .. x_{L-1}; padding and (SFT) prompt
        tokens are not scored.
        """
        start = torch.full_like(input_ids[:, :1], self.start_id)  # (B, 1)
        inputs = torch.cat([start, input_ids[:, :-1]], dim=1)  # (B, L)
        scored = torch.ones_like(input_ids, dtype=torch.bool)  # (B, L)
        input_mask = None
        if attention_mask is not None:
            scored &= attention_mask.bool()
            input_mask = torch.cat([attention_mask[:, :1], attention_mask[:, :-1]], dim=1)
        if prompt_mask is not None:
            scored &= ~prompt_mask.bool()
        logits = logits_at(backbone, inputs, input_mask, scored)  # (N, V)
        return masked_nll_per_row(logits, input_ids, scored), scored.sum(dim=1).float()

    def training_loss(self, backbone: LogitsFn, batch: Batch) -> TrainingLoss:
        """Mean next-token loss over the scored tokens (SFT: the response tokens only)."""
        prompt_mask = batch.get("prompt_mask")
        row_nll, scored = self.row_nll(
            backbone, batch["input_ids"], batch.get("attention_mask"), prompt_mask
        )
        if prompt_mask is not None:
            return TrainingLoss(row_nll.sum() / scored.sum().clamp_min(1.0))
        return TrainingLoss(row_nll.sum() / scored.sum(), tokens=scored.sum())

    def validation_nll(
        self, backbone: LogitsFn, batch: Batch, generator: torch.Generator
    ) -> RowNLL:
        """Exact: nothing is drawn, `generator` is unused."""
        row_nll, scored = self.row_nll(
            backbone, batch["input_ids"], batch.get("attention_mask"), batch.get("prompt_mask")
        )
        return RowNLL(row_nll, scored)

    # -------------------------------------------------------------- likelihood
    def log_likelihood(
        self,
        backbone: LogitsFn,
        pairs: list[tuple[Tensor, Tensor]],
        *,
        mc_samples: int = 1,
        batch_size: int = 32,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Exact log p(answer | prompt) by the chain rule, `batch_size` pairs per pass; stderr 0.

        Nothing is drawn: `mc_samples` and `seed` are unused.
        """
        values = [
            self._batch_log_likelihood(backbone, pairs[first : first + batch_size])
            for first in range(0, len(pairs), batch_size)
        ]
        result = torch.cat(values)  # (N,)
        return result, torch.zeros_like(result)

    def _batch_log_likelihood(
        self, backbone: LogitsFn, pairs: list[tuple[Tensor, Tensor]]
    ) -> Tensor:
        """Right-padded [prompt | answer] rows scored on the answer tokens. -> (N,) log-probs."""
        width = max(prompt.numel() + answer.numel() for prompt, answer in pairs)
        device = pairs[0][1].device
        ids = torch.full((len(pairs), width), self.start_id, dtype=torch.long, device=device)
        attention = torch.zeros_like(ids)  # (N, W)
        prompt_mask = torch.ones_like(ids, dtype=torch.bool)  # (N, W)
        for row, (prompt, answer) in enumerate(pairs):
            end = prompt.numel() + answer.numel()
            ids[row, :end] = torch.cat([prompt, answer])
            attention[row, :end] = 1
            prompt_mask[row, prompt.numel() : end] = False
        row_nll, _ = self.row_nll(backbone, ids, attention, prompt_mask)
        return -row_nll  # (N,)

    def score(
        self,
        backbone: LogitsFn,
        context: Tensor,
        answer: Tensor,
        *,
        mc_samples: int = 1,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        greedy_check: str = "one_pass",
    ) -> tuple[float, bool]:
        """Exact value and greedy check in one causal pass; `context` (P,) starts non-empty."""
        ids = torch.cat([context, answer])  # (P + T,)
        logits = backbone(ids[None, :-1], None)[0, -answer.numel() :].double()  # (T, V)
        log_prob = torch.log_softmax(logits, dim=-1).gather(1, answer[:, None]).sum()
        return float(log_prob), bool((logits.argmax(dim=-1) == answer).all())

    # --------------------------------------------------------------- decoding
    def decode(
        self,
        logits_fn: LogitsFn,
        canvas: Tensor,
        *,
        chooser: TokenChooser,
        attention_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        forbid_ids: Sequence[int] = (),
        record: bool = False,
        **ignored: Any,
    ) -> GenerationResult:
        """Left to right: each masked column is filled from everything to its left (one NFE each).

        canvas (B, L) starts with the start token after any left padding; remasking, steps and
        blocks do not apply (the order is fixed). Masks inside a template are filled in reading
        order without seeing the text to their right: the AR's best use of an infilling query.
        """
        canvas = canvas.clone()
        attention = torch.ones_like(canvas) if attention_mask is None else attention_mask
        to_fill = (canvas == self.mask_id) & attention.bool()  # (B, L)
        columns = to_fill.any(dim=0).nonzero().flatten().tolist()
        if columns and columns[0] == 0:
            raise ValueError("an autoregressive model needs a start token before the first mask")
        trajectory, started = [], time.perf_counter()
        for column in columns:
            logits = logits_fn(canvas[:, :column], attention[:, :column])[:, -1:]  # (B, 1, V)
            tokens = chooser.choose(forbid_tokens(logits, forbid_ids), generator)[:, 0]  # (B,)
            rows = to_fill[:, column]  # (B,)
            canvas[rows, column] = tokens[rows]
            if record:
                trajectory.append(canvas.cpu().clone())
        return GenerationResult(canvas, len(columns), time.perf_counter() - started, trajectory)
