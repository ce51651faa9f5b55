"""`AutoregressiveLM`: the left-to-right baseline, one override away from the diffusion model.

The same native transformer with `causal=True` (`model=ar_tiny`), trained by the same entry on the
same data with the next-token loss. Everything else is shared with `DiffusionLM`: optimizer,
checkpoints, logging, the `generate`/`infill`/`log_likelihood` API. Its perplexity is exact, and
every sequence is scored from a start token (EOS, the packing separator), so an AR and an MDM are
scored on exactly the same tokens.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from llada.data.tokenizer import eos_id
from llada.diffusion.losses import masked_nll_per_row
from llada.diffusion.sampling import GenerationResult
from llada.diffusion.token_choice import forbid_tokens
from llada.module import DiffusionLM, token_chooser


class AutoregressiveLM(DiffusionLM):
    """Next-token prediction with a causal backbone: `forward(ids, mask) -> logits (B, L, V)`."""

    lm_kind = "autoregressive"

    def __init__(self, backbone: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        if not getattr(backbone, "causal", False):
            raise ValueError(
                "an AutoregressiveLM needs a causal backbone; use model=ar_tiny (model.causal=true)"
            )
        super().__init__(backbone, *args, **kwargs)
        self.val_mc_samples = 1  # exact: one pass gives the value, repeats would only cost time
        self.start_id = eos_id(self.tokenizer)

    @property
    def prefix_ids(self) -> list[int]:
        """Every sequence starts with the start token, so the first real token is scored too."""
        return [self.start_id]

    def _weighted_nll(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        generator: torch.Generator | None,
        full_range: bool = False,
        prompt_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Exact -log p(x) per row: (row_nll (B,), scored tokens (B,), zeros (B,) in place of t).

        Inputs are [start, x_0 .. x_{L-2}] predicting x_0 .. x_{L-1}; padding and (SFT) prompt
        tokens are not scored. `generator` and `full_range` are meaningless here: nothing is drawn.
        """
        batch = input_ids.shape[0]
        start = torch.full_like(input_ids[:, :1], self.start_id)  # (B, 1)
        inputs = torch.cat([start, input_ids[:, :-1]], dim=1)  # (B, L)
        scored = torch.ones_like(input_ids, dtype=torch.bool)  # (B, L)
        input_mask = None
        if attention_mask is not None:
            scored &= attention_mask.bool()
            input_mask = torch.cat([attention_mask[:, :1], attention_mask[:, :-1]], dim=1)
        if prompt_mask is not None:
            scored &= ~prompt_mask.bool()
        if getattr(self.backbone, "supports_output_mask", False):
            logits = self.backbone(inputs, input_mask, output_mask=scored)  # (N, V)
        else:
            logits = self(inputs, input_mask)[scored]  # (N, V)
        row_nll = masked_nll_per_row(logits, input_ids, scored)  # (B,)
        zeros = torch.zeros(batch, device=input_ids.device)
        return row_nll, scored.sum(dim=1).float(), zeros

    def _log_loss_by_t(self, per_token: Tensor, t: Tensor) -> None:
        """No noise level in next-token training: nothing to bucket."""

    def _sft_step(self, batch: dict[str, Tensor]) -> Tensor:
        """SFT: next-token loss on the response tokens only, averaged over them."""
        row_nll, slots, _ = self._weighted_nll(
            batch["input_ids"], batch.get("attention_mask"), None, prompt_mask=batch["prompt_mask"]
        )
        loss = row_nll.sum() / slots.sum().clamp_min(1.0)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @staticmethod
    def _check_generation(options: dict[str, Any]) -> None:
        DiffusionLM._check_generation(options)
        if float(options["cfg_scale"]) > 0:
            raise ValueError(
                "sampler.cfg_scale > 0 is classifier-free guidance for diffusion sampling; "
                "set it to 0 for an autoregressive model"
            )

    def _reverse(
        self,
        canvas: Tensor,
        attention: Tensor,
        prompt_mask: Tensor,
        gen_start: int,
        options: dict[str, Any],
        seed: int | None,
        record: bool,
    ) -> GenerationResult:
        """Left-to-right: each masked column is filled from everything to its left (one NFE each).

        canvas (B, L) starts with the start token after any left padding; remasking, steps and
        blocks do not apply (the order is fixed). Masks inside a template are filled in reading
        order without seeing the text to their right: the AR's best use of an infilling query.
        """
        chooser = token_chooser(options)
        generator = self._generator(seed)
        forbidden = (eos_id(self.tokenizer),) if options["forbid_eos"] else ()
        canvas = canvas.clone()
        to_fill = (canvas == self.mask_id) & attention.bool()  # (B, L)
        columns = to_fill.any(dim=0).nonzero().flatten().tolist()
        if columns and columns[0] == 0:
            raise ValueError("an autoregressive model needs a start token before the first mask")
        was_training = self.training
        self.eval()
        trajectory, started = [], time.perf_counter()
        try:
            for column in columns:
                logits = self(canvas[:, :column], attention[:, :column])[:, -1:]  # (B, 1, V)
                tokens = chooser.choose(forbid_tokens(logits, forbidden), generator)[:, 0]  # (B,)
                rows = to_fill[:, column]  # (B,)
                canvas[rows, column] = tokens[rows]
                if record:
                    trajectory.append(canvas.cpu().clone())
        finally:
            self.train(was_training)
        seconds = time.perf_counter() - started
        return GenerationResult(canvas, len(columns), seconds, trajectory)

    @torch.no_grad()
    def log_likelihood(
        self,
        prompt: str | list[str],
        answer: str | list[str],
        mc_samples: int = 1,
        batch_size: int = 32,
        seed: int = 0,
        return_stderr: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Exact log p(answer | prompt) in nats per pair (chain rule; stderr 0).

        `mc_samples` and `seed` exist for the shared API; nothing is sampled.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        answers = [answer] if isinstance(answer, str) else list(answer)
        if len(prompts) != len(answers):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
        pairs = list(zip(prompts, answers, strict=True))
        values = []
        was_training = self.training
        self.eval()
        try:
            for first in range(0, len(pairs), batch_size):
                values.append(self._pair_log_likelihood(pairs[first : first + batch_size]))
        finally:
            self.train(was_training)
        result = torch.cat(values).cpu()
        return (result, torch.zeros_like(result)) if return_stderr else result

    def _pair_log_likelihood(self, pairs: list[tuple[str, str]]) -> Tensor:
        """Right-padded [prompt | answer] rows scored on the answer tokens. -> (N,) log-probs."""
        encoded, answer_lengths = [], []
        for prompt_text, answer_text in pairs:
            answer_ids = self.tokenizer.encode(answer_text, add_special_tokens=False)
            if not answer_ids:
                raise ValueError(f"answer {answer_text!r} has no tokens")
            prompt_ids = self.tokenizer.encode(prompt_text, add_special_tokens=False)
            encoded.append(prompt_ids + answer_ids)
            answer_lengths.append(len(answer_ids))
        width = max(len(ids) for ids in encoded)
        limit = self.context_length
        if limit is not None and width > limit:
            raise ValueError(f"prompt + answer has {width} tokens, more than the context {limit}")
        ids = torch.full((len(encoded), width), self.start_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        prompt_mask = torch.ones_like(ids, dtype=torch.bool)
        for row, (row_ids, n_answer) in enumerate(zip(encoded, answer_lengths, strict=True)):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            attention[row, : len(row_ids)] = 1
            prompt_mask[row, len(row_ids) - n_answer : len(row_ids)] = False
        row_nll, _, _ = self._weighted_nll(
            ids.to(self.device),
            attention.to(self.device),
            None,
            prompt_mask=prompt_mask.to(self.device),
        )
        return -row_nll  # (N,)
