"""Held-out fill-in evaluation (llada.tasks) on hand-made cases, and the MDM-vs-AR script end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from llada.data.synthetic import reversal
from llada.data.tokenizer import train_tokenizer
from llada.diffusion.next_token import NextToken
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM
from llada.tasks import answer_slot, blank_cells, exact_match, span_infill_accuracy

TEXTS = ["Bako is the parent of Timu.", "Sida is the teacher of Lifi.", "1 2 3 4 / 3 4 1 2"]


@pytest.fixture(scope="module", params=[False, True], ids=["mdm", "ar"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DiffusionLM:
    tokenizer = train_tokenizer(TEXTS * 30, 90, "wordpiece", tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    causal = request.param
    backbone = NativeTransformer(len(tokenizer), dim=32, n_layers=1, n_heads=2, causal=causal)
    return DiffusionLM(backbone, tokenizer, objective=NextToken if causal else None).eval()


def test_answer_slot_puts_the_answer_after_the_prompt_or_in_its_slot() -> None:
    assert answer_slot(("Timu is the child of", "Bako"), 2) == (
        "Timu is the child of [MASK]x2.",
        "Timu is the child of Bako.",
    )
    assert answer_slot(("{answer} is the parent of Timu.", "Bako"), 3) == (
        "[MASK]x3 is the parent of Timu.",
        "Bako is the parent of Timu.",
    )


def test_blank_cells_masks_every_blank_and_expects_the_solution() -> None:
    puzzle, solution = "1 _ 3 4 / _ 4 1 2", "1 2 3 4 / 3 4 1 2"
    assert blank_cells((puzzle, solution), 1) == ("1 [MASK] 3 4 / [MASK] 4 1 2", solution)


def test_reversal_infill_queries_ask_the_reverse_facts() -> None:
    task = reversal(n_entities=20, both_fraction=0.5, repeats=2, facts_per_document=2, seed=0)
    assert len(task.queries["reverse_infill"]) == len(task.queries["reverse"])
    for (template, answer), (prompt, reverse_answer) in zip(
        task.queries["reverse_infill"], task.queries["reverse"], strict=True
    ):
        assert answer == reverse_answer and template.startswith("{answer} is the ")
        sentence = template.format(answer=answer)
        assert sentence in " ".join(task.train)  # the trained sentence, first name masked
        assert f"{prompt} {answer}." not in " ".join(task.train)  # the reverse never was


def test_exact_match_scores_what_it_compares(model: DiffusionLM) -> None:
    queries = [("Bako is the parent of", "Timu"), ("{answer} is the teacher of Lifi.", "Sida")]
    accuracy, records = exact_match(model, "reversal", queries)
    assert len(records) == 2
    for record in records:
        assert record["correct"] == (record["output"] == record["expected"])
        # The text around the slot is kept; only the answer slot is filled.
        kept = record["template"].split("[MASK]")[0].strip()
        assert record["output"].startswith(kept)
    assert accuracy == sum(r["correct"] for r in records) / 2


def test_span_infill_keeps_the_context_and_counts_hits(model: DiffusionLM) -> None:
    ids = model.tokenizer.encode(" ".join(TEXTS * 3), add_special_tokens=False)
    windows = torch.tensor([ids[0:16], ids[5:21], ids[10:26]])  # (3, 16)
    masked = windows.clone()
    masked[:, 6:10] = model.mask_id
    out = model.infill_ids(masked.tolist(), sampler="greedy", steps=4)
    filled = out.tokens[:, -16:]  # the windows, after the AR's start token
    keep = torch.ones(16, dtype=torch.bool)
    keep[6:10] = False
    assert torch.equal(filled[:, keep], windows[:, keep])
    assert not (filled == model.mask_id).any()
    result = span_infill_accuracy(model, windows, span=4)
    for where in ("start", "middle", "end"):
        assert 0.0 <= result["accuracy"][where] <= result["token_accuracy"][where] <= 1.0
        assert result["n"][where] == 3


@pytest.mark.slow
def test_any_order_script_trains_both_models_and_prints_the_table(tmp_path: Path) -> None:
    tiny = [
        "model.dim=32", "model.n_layers=1", "model.n_heads=2", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "sampler.steps=4",
        "sampler.n_tokens=4", "callbacks.samples.num_samples=1", "callbacks.task.limit=8",
        "data.corpus.n_entities=40", "data.corpus.repeats=2", "data.block_size=32",
        "data.val_fraction=0.2", "data.batch_size=4",
    ]  # fmt: skip
    command = [sys.executable, "scripts/any_order.py", "reversal", *tiny, "--seeds", "0", "1"]
    command += ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| MDM |" in done.stdout and "| AR |" in done.stdout
    assert "2 seeds)" in done.stdout  # every cell is a spread over the seeds
    saved = json.loads((tmp_path / "results" / "any_order_reversal.json").read_text())
    assert set(saved["results"]) == {"MDM", "AR"} and saved["seeds"] == [0, 1]
    assert all(r["lm"] == "autoregressive" for r in saved["results"]["AR"])
    assert all(r["lm"] == "diffusion" for r in saved["results"]["MDM"])
    for seeds in saved["results"].values():
        assert [r["seed"] for r in seeds] == [0, 1]
        for result in seeds:
            assert set(result["accuracy"]) == {"forward", "reverse", "reverse_infill"}
            assert result["n"]["forward"] == 8
    # A rerun reuses the finished runs; an interrupted one (a last.ckpt, no done.json) resumes
    # from it; other overrides never train over them.
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "[train]" not in again.stdout, again.stderr[-2000:]
    interrupted = tmp_path / "runs" / "reversal" / "seed1" / "mdm"
    (interrupted / "done.json").unlink()
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("[train]") == 1 and "(resumed)" in resumed.stdout
    assert json.loads((interrupted / "done.json").read_text())["resumed"] is True
    after = json.loads((tmp_path / "results" / "any_order_reversal.json").read_text())
    for model, seeds in saved["results"].items():  # the same weights: the same answers
        assert [r["accuracy"] for r in after["results"][model]] == [r["accuracy"] for r in seeds]
    other = [c if c != "trainer.max_steps=4" else "trainer.max_steps=6" for c in command]
    refused = subprocess.run(other, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "holds a run of other overrides" in refused.stderr
