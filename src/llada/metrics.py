"""Sample-quality metrics for `llada.eval`: diversity of samples and their perplexity under a judge.

A sampler setting that buys speed (fewer steps, parallel commits) can lose quality in two ways that
one number misses: samples become repetitive (low distinct-n, low unigram entropy) or implausible
(high perplexity under an independent causal LM, the "judge"). The judge alone rewards repetition,
so read the two together, as MDLM and ReMDM report them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

TokenRows = Sequence[Sequence[int]]


def distinct_n(rows: TokenRows, n: int) -> float:
    """Unique n-grams / all n-grams over every sample (n-grams never span two samples).

    1.0 when no n-gram repeats; near 0 for degenerate repetition. 0.0 when no sample has n tokens.
    """
    if n < 1:
        raise ValueError(f"distinct_n needs n >= 1, got {n}")
    grams = [tuple(row[i : i + n]) for row in rows for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_entropy(rows: TokenRows) -> float:
    """Mean over samples of the entropy (nats) of each sample's own token frequencies.

    Per sample, as MDLM/ReMDM report it: a sample stuck on one token scores 0 however many
    different stuck samples there are. Empty samples are left out; 0.0 when all are empty.
    """
    entropies = [_entropy(Counter(row)) for row in rows if len(row)]
    return sum(entropies) / len(entropies) if entropies else 0.0


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


class Judge(Protocol):
    """A causal LM that scores texts: the summed NLL (nats) and the token count of each."""

    name: str

    def nll(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """-> (nll (N,) float64, tokens (N,) long): every token of a text is scored."""
        ...


def judge_perplexity(judge: Judge, texts: list[str]) -> float:
    """exp(total NLL / total tokens) of the non-empty texts under the judge (token-weighted).

    Empty samples (a sample that is all EOS) have no tokens to score and are left out; NaN when
    every sample is empty.
    """
    scored = [text for text in texts if text.strip()]
    if not scored:
        return float("nan")
    nll, tokens = judge.nll(scored)
    return math.exp(float(nll.sum()) / max(int(tokens.sum()), 1))


class CheckpointJudge:
    """One of the project's autoregressive checkpoints: exact NLL from a start token."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 32) -> None:
        from llada.module import DiffusionLM

        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"judge checkpoint not found: {path} (pass an AR .ckpt trained with "
                "model=ar_tiny, an HF causal LM directory, or judge=null)"
            )
        self.model = DiffusionLM.load_from_checkpoint(path, map_location=device)
        if not self.model.objective.exact:
            raise ValueError(
                f"judge {path} is a {self.model.lm_kind} model; a judge must be a causal LM "
                "(a checkpoint trained with model=ar_tiny, or an HF causal LM)"
            )
        self.name, self.batch_size = str(path), batch_size

    def nll(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        tokenizer = self.model.tokenizer
        tokens = torch.tensor([len(tokenizer.encode(t, add_special_tokens=False)) for t in texts])
        log_prob = self.model.log_likelihood([""] * len(texts), texts, batch_size=self.batch_size)
        return -log_prob.double(), tokens  # (N,), (N,)


class HFJudge:
    """Any `AutoModelForCausalLM` (local directory or cached hub name), scored after its BOS."""

    def __init__(self, name_or_path: str, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llada.hub import resolve_pretrained

        self.tokenizer = resolve_pretrained(AutoTokenizer, name_or_path)
        self.model = resolve_pretrained(AutoModelForCausalLM, name_or_path).to(device).eval()
        start = self.tokenizer.bos_token_id
        self.start_id = start if start is not None else self.tokenizer.eos_token_id
        if self.start_id is None:
            raise ValueError(f"judge {name_or_path}: its tokenizer has neither a BOS nor an EOS")
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)
        self.name, self.device, self.batch_size = name_or_path, device, batch_size

    @torch.no_grad()
    def nll(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        nll, tokens = [], []
        for first in range(0, len(texts), self.batch_size):
            rows = [
                [self.start_id, *self.tokenizer.encode(text, add_special_tokens=False)]
                for text in texts[first : first + self.batch_size]
            ]
            rows = [row[: self.max_length] for row in rows] if self.max_length else rows
            width = max(len(row) for row in rows)
            ids = torch.full((len(rows), width), self.start_id, dtype=torch.long)  # (B, W)
            attention = torch.zeros_like(ids)  # (B, W), right padding
            for index, row in enumerate(rows):
                ids[index, : len(row)] = torch.tensor(row)
                attention[index, : len(row)] = 1
            ids, attention = ids.to(self.device), attention.to(self.device)
            out = self.model(input_ids=ids, attention_mask=attention)
            logits = out.logits[:, :-1]  # (B, W-1, V): position i predicts token i + 1
            targets, scored = ids[:, 1:], attention[:, 1:].bool()  # (B, W-1)
            token_nll = torch.nn.functional.cross_entropy(
                logits.double().transpose(1, 2), targets, reduction="none"
            )  # (B, W-1)
            nll.append((token_nll * scored).sum(dim=1).cpu())
            tokens.append(scored.sum(dim=1).cpu())
        return torch.cat(nll), torch.cat(tokens)  # (N,), (N,)


def load_judge(spec: str, device: str = "cpu", **options: Any) -> Judge:
    """`judge=` value -> a Judge: a `.ckpt` file is one of ours, anything else an HF causal LM."""
    path = Path(spec).expanduser()
    kind = CheckpointJudge if path.suffix == ".ckpt" or path.is_file() else HFJudge
    return kind(spec, device=device, **options)
