"""The autoregressive baseline: exact next-token loss and likelihood, left-to-right sampling, and
`model=ar_tiny` through the same train entry with an exact validation perplexity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_RUN, compose_config
from llada.data.tokenizer import train_tokenizer
from llada.diffusion.next_token import NextToken
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM
from llada.train import train

TEXTS = ["the cat sat on the mat", "a dog lay on the rug", "the owl flew over the log"]


@pytest.fixture(scope="module")
def ar_model(tmp_path_factory: pytest.TempPathFactory) -> DiffusionLM:
    tokenizer = train_tokenizer(TEXTS * 20, 80, "wordpiece", tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    backbone = NativeTransformer(
        len(tokenizer), dim=32, n_layers=2, n_heads=2, max_len=32, causal=True
    )
    return DiffusionLM(backbone, tokenizer, objective=NextToken).eval()


def _naive_log_prob(model: DiffusionLM, ids: list[int], first_scored: int) -> float:
    """Chain rule one position at a time on the unpadded sequence [start, *ids]."""
    full = torch.tensor([[model.objective.start_id, *ids]])
    total = 0.0
    for position in range(first_scored, len(ids)):
        logits = model.backbone(full[:, : position + 1])[0, -1]  # (V,)
        total += F.log_softmax(logits, dim=-1)[ids[position]].item()
    return total


@pytest.mark.parametrize("causal", [False, True])
def test_left_padding_gives_the_unpadded_logits(causal: bool) -> None:
    """RoPE is relative and padded keys are hidden: left padding changes nothing for real tokens."""
    torch.manual_seed(0)
    model = NativeTransformer(50, dim=32, n_layers=2, n_heads=4, max_len=16, causal=causal).eval()
    ids = torch.randint(1, 50, (1, 10))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)  # (1, 13)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 10)], dim=1).long()
    torch.testing.assert_close(model(padded, mask)[:, 3:], model(ids), atol=1e-5, rtol=1e-5)


def test_backbone_must_be_causal(ar_model: DiffusionLM) -> None:
    bidirectional = NativeTransformer(len(ar_model.tokenizer), dim=32, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match="causal backbone"):
        DiffusionLM(bidirectional, ar_model.tokenizer, objective=NextToken)


def test_training_loss_is_the_next_token_cross_entropy(ar_model: DiffusionLM) -> None:
    ids = torch.randint(5, len(ar_model.tokenizer), (3, 12))
    row_nll, counts = ar_model.objective.row_nll(ar_model.backbone, ids, None)
    inputs = torch.cat([torch.full((3, 1), ar_model.objective.start_id), ids[:, :-1]], dim=1)
    logits = ar_model.backbone(inputs)  # (3, 12, V)
    expected = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none").sum(1)  # (3,)
    torch.testing.assert_close(row_nll, expected, atol=1e-4, rtol=1e-5)
    assert counts.tolist() == [12.0] * 3
    # Right padding: padded targets are not scored and do not change the real tokens' scores.
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    padded_nll, padded_counts = ar_model.objective.row_nll(ar_model.backbone, ids, mask)
    alone, _ = ar_model.objective.row_nll(ar_model.backbone, ids[:1, :8], None)
    torch.testing.assert_close(padded_nll[0], alone[0], atol=1e-4, rtol=1e-5)
    assert padded_counts[0].item() == 8


def test_log_likelihood_is_the_exact_chain_rule(ar_model: DiffusionLM) -> None:
    prompts, answers = ["the cat", "a dog lay on"], ["sat on the mat", "the"]
    values, errors = ar_model.log_likelihood(prompts, answers, return_stderr=True)
    for value, prompt, answer in zip(values.tolist(), prompts, answers, strict=True):
        prompt_ids = ar_model.tokenizer.encode(prompt, add_special_tokens=False)
        answer_ids = ar_model.tokenizer.encode(answer, add_special_tokens=False)
        expected = _naive_log_prob(ar_model, prompt_ids + answer_ids, len(prompt_ids))
        assert value == pytest.approx(expected, abs=1e-4)
    assert torch.all(errors == 0)


def test_greedy_generation_is_left_to_right_argmax(ar_model: DiffusionLM) -> None:
    prompts = ["the cat", "a dog lay on the"]  # ragged: the batch is left-padded
    batch = ar_model.generate_with_info(prompts, 6, sampler="greedy", stop_at_eos=False)
    assert batch.nfe == 6
    for row, prompt in enumerate(prompts):
        ids = [
            ar_model.objective.start_id,
            *ar_model.tokenizer.encode(prompt, add_special_tokens=False),
        ]
        for _ in range(6):
            logits = ar_model.backbone(torch.tensor([ids]))[0, -1]
            ids.append(int(logits.argmax()))
        assert batch.tokens[row].tolist() == ids[-6:]


def test_infill_fills_masks_in_reading_order(ar_model: DiffusionLM) -> None:
    filled = ar_model.infill_with_info("the cat [MASK]x2 on the mat", sampler="greedy")
    ids = [
        ar_model.objective.start_id,
        *ar_model.tokenizer.encode("the cat", add_special_tokens=False),
    ]
    for _ in range(2):
        ids.append(int(ar_model.backbone(torch.tensor([ids]))[0, -1].argmax()))
    assert filled.nfe == 2
    assert filled.tokens[0, : len(ids)].tolist() == ids


def test_guidance_is_refused(ar_model: DiffusionLM) -> None:
    with pytest.raises(ValueError, match="cfg_scale"):
        ar_model.generate("the cat", 4, cfg_scale=1.0)


@pytest.mark.slow
def test_ar_tiny_trains_with_exact_perplexity_and_reloads(tmp_path: Path) -> None:
    cfg = compose_config("train", overrides=[*TINY_RUN, "model=ar_tiny", f"run_dir={tmp_path}"])
    result = train(cfg)
    model, trainer = result["model"], result["trainer"]
    assert isinstance(model.objective, NextToken)
    # Exact: the logged perplexity is exp of the token-mean NLL over the validation batches.
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for index, batch in enumerate(trainer.datamodule.val_dataloader()):
            if index >= cfg.trainer.limit_val_batches:
                break
            row_nll, counts = model.objective.row_nll(model.backbone, batch["input_ids"], None)
            total, count = total + row_nll.sum().item(), count + counts.sum().item()
    assert result["metrics"]["val/ppl"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert result["metrics"]["val/ppl"] < len(model.tokenizer)  # it learned something
    reloaded = DiffusionLM.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(reloaded.objective, NextToken)
    text = reloaded.generate("The return statement", 5, sampler="greedy", seed=0)
    assert text == model.generate("The return statement", 5, sampler="greedy", seed=0)
