"""`python -m llada.eval` through its CLI on tiny trained checkpoints, and the metric helpers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from conftest import REPO, TINY_RUN, compose_config, run_cli
from llada.eval import data_config, evaluate, synthetic_task
from llada.generation import GenerationSettings
from llada.metrics import HFJudge, distinct_n, judge_perplexity, load_judge, unigram_entropy
from llada.module import DiffusionLM
from llada.tasks import task_accuracy
from llada.train import train


def sampling_settings(cfg: DictConfig) -> dict:
    """What llada.eval passes to generate: the given sampler/remasking keys only."""
    return GenerationSettings.group_values(cfg.get("sampler"), cfg.get("remasking"))


GEN_METRICS = {
    "gen/nfe", "gen/seconds", "gen/tokens_per_second", "gen/samples", "gen/mean_tokens",
    "gen/distinct_1", "gen/distinct_2", "gen/unigram_entropy",
}  # fmt: skip
VAL_METRICS = {"val/elbo", "val/ppl", "val/elbo_stderr", "val/batches"}


# ------------------------------------------------------------------------ metric helpers


def test_distinct_n_on_hand_made_rows() -> None:
    assert distinct_n([[1, 2, 1, 2]], 1) == 0.5
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)  # (1,2) (2,1) (1,2)
    assert distinct_n([[1, 2], [1, 2]], 2) == 0.5  # a repeat across samples counts
    assert distinct_n([[1, 2], [2, 1]], 2) == 1.0  # n-grams never span two samples
    assert distinct_n([[1], []], 2) == 0.0  # nothing long enough
    with pytest.raises(ValueError, match="n >= 1"):
        distinct_n([[1]], 0)


def test_unigram_entropy_on_hand_made_rows() -> None:
    assert unigram_entropy([[1, 1, 2, 2]]) == pytest.approx(math.log(2))
    assert unigram_entropy([[7, 7, 7], [1, 2, 3, 4]]) == pytest.approx(math.log(4) / 2)
    assert unigram_entropy([[], [5, 5]]) == 0.0  # empty samples are left out
    assert unigram_entropy([]) == 0.0


class TableJudge:
    """Fixed NLL and token count per text."""

    name = "table"

    def __init__(self, table: dict[str, tuple[float, int]]) -> None:
        self.table = table

    def nll(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.tensor([self.table[t][0] for t in texts], dtype=torch.float64),
            torch.tensor([self.table[t][1] for t in texts]),
        )


def test_judge_perplexity_is_token_weighted_and_skips_empty_samples() -> None:
    judge = TableJudge({"a b": (2.0, 2), "c": (3.0, 1)})
    assert judge_perplexity(judge, ["a b", "c", "  "]) == pytest.approx(math.exp(5 / 3))
    assert math.isnan(judge_perplexity(judge, ["", " "]))


def _hf_causal_lm(directory: Path, zero: bool) -> int:
    """A 1-layer GPT-2 and a word-level tokenizer saved to `directory`; returns the vocab size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["[UNK]", "[EOS]", "the", "cat", "sat", "on", "mat"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="[EOS]"
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=16)
    model = GPT2LMHeadModel(config)
    if zero:  # tied embeddings all zero: every logit is 0, the next token uniform
        torch.nn.init.zeros_(model.transformer.wte.weight)
    model.save_pretrained(directory)
    return len(words)


def test_hf_judge_of_a_uniform_model_has_the_vocabulary_as_perplexity(tmp_path: Path) -> None:
    vocab = _hf_causal_lm(tmp_path, zero=True)
    judge = load_judge(str(tmp_path))
    assert isinstance(judge, HFJudge)
    _, tokens = judge.nll(["the cat sat", "mat"])
    assert tokens.tolist() == [3, 1]  # every token of the text, scored after EOS as BOS
    assert judge_perplexity(judge, ["the cat sat", "mat"]) == pytest.approx(vocab)


def test_hf_judge_batches_like_one_by_one(tmp_path: Path) -> None:
    _hf_causal_lm(tmp_path, zero=False)
    judge = HFJudge(str(tmp_path), batch_size=8)
    texts = ["the cat sat on the mat", "cat", "on the"]  # ragged: right padding in one batch
    batched, _ = judge.nll(texts)
    alone = torch.cat([judge.nll([text])[0] for text in texts])
    torch.testing.assert_close(batched, alone)


def test_load_judge_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="judge checkpoint not found"):
        load_judge(str(tmp_path / "missing.ckpt"))
    with pytest.raises(OSError, match="unreachable") as info:
        load_judge("no-such-org/no-such-model")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------- config handling


def _eval_cfg(*overrides: str) -> OmegaConf:
    return compose_config("eval", overrides=overrides)


def test_unset_sampler_keys_keep_the_checkpoint_settings() -> None:
    assert sampling_settings(_eval_cfg()) == {}
    assert sampling_settings(_eval_cfg("sampler.steps=8")) == {"steps": 8}
    chosen = sampling_settings(_eval_cfg("sampler=greedy", "remasking=threshold"))
    assert chosen["sampler"] == "greedy" and chosen["remasking"] == "threshold"
    assert chosen["remasking_options"] == {"threshold": 0.9}
    assert chosen["block_length"] == 4  # a group option sets every key of the group


def test_eval_sampler_keys_match_the_sampler_group() -> None:
    """conf/eval.yaml lists the sampler keys as ???: they must follow conf/sampler/."""
    defaults = OmegaConf.load(REPO / "conf" / "sampler" / "multinomial.yaml")
    assert set(_eval_cfg().sampler) == set(defaults)


def test_missing_data_config_asks_for_data() -> None:
    old = SimpleNamespace(data_config=None)
    with pytest.raises(ValueError, match=r"stores no data config .*; pass data=<option>"):
        data_config(old, _eval_cfg("ckpt=old.ckpt"))  # type: ignore[arg-type]
    given = data_config(old, _eval_cfg("data=sudoku"))  # type: ignore[arg-type]
    assert given["corpus"]["task"] == "sudoku"


# ------------------------------------------------------------ on trained checkpoints


def _train(run_dir: Path, *overrides: str) -> dict:
    cfg = compose_config("train", overrides=[*TINY_RUN, *overrides, f"run_dir={run_dir}"])
    result = train(cfg)
    result["ckpt"] = run_dir / "checkpoints" / "last.ckpt"
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A tiny diffusion, AR and block diffusion model on the same data (seconds each)."""
    return {
        "diffusion": _train(tmp_path_factory.mktemp("mdm")),
        "autoregressive": _train(tmp_path_factory.mktemp("ar"), "model=ar_tiny"),
        "block_diffusion": _train(
            tmp_path_factory.mktemp("bd3"), "objective=bd3", "objective.block_size=8"
        ),
    }


@pytest.mark.slow
def test_eval_cli_writes_every_metric_with_a_judge(trained: dict, tmp_path: Path) -> None:
    mdm, ar = trained["diffusion"], trained["autoregressive"]
    proc = run_cli(
        "llada.eval",
        f"ckpt={mdm['ckpt']}", f"judge={ar['ckpt']}", "val_batches=2", "num_samples=4",
        "batch_size=2", "logger=csv", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    result = json.loads((tmp_path / "eval.json").read_text())
    metrics = result["metrics"]
    assert VAL_METRICS | GEN_METRICS | {"gen/judge_ppl"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert 1.0 < metrics["gen/judge_ppl"] < 10 * len(trained["autoregressive"]["model"].tokenizer)
    # The same draws (val_mc_samples=4, val_seed) on the same 2 batches: what training logged.
    assert metrics["val/ppl"] == pytest.approx(mdm["metrics"]["val/ppl"], rel=1e-5)
    assert result["ckpt"] == str(mdm["ckpt"].resolve())
    assert result["lm"] == "diffusion" and len(result["samples"]) == 4
    settings = result["settings"]
    assert (settings["sampler"], settings["steps"], settings["n_tokens"]) == ("multinomial", 8, 8)
    assert metrics["gen/nfe"] == 8 and settings["judge"] == str(ar["ckpt"])
    assert "validation ELBO perplexity" in proc.stdout and "judge ppl=" in proc.stdout
    with (tmp_path / "metrics.csv").open() as handle:
        logged = list(csv.DictReader(handle))
    assert float(logged[0]["gen/nfe"]) == 8


@pytest.mark.slow
def test_eval_multirun_writes_one_json_per_setting(trained: dict, tmp_path: Path) -> None:
    run_cli(
        "llada.eval",
        "-m", f"ckpt={trained['diffusion']['ckpt']}", "remasking=random,low_confidence",
        "sampler.steps=4,8", "val_batches=1", "num_samples=2", "task=false",
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/eval.json"))]
    assert len(results) == 4
    settings = {(r["settings"]["remasking"], r["settings"]["steps"]) for r in results}
    assert settings == {(s, n) for s in ("random", "low_confidence") for n in (4, 8)}
    assert all(r["metrics"]["gen/nfe"] == r["settings"]["steps"] for r in results)
    assert all(r["settings"]["n_tokens"] == 8 for r in results)  # the checkpoint's own
    assert len({r["metrics"]["val/ppl"] for r in results}) == 1  # settings-independent


@pytest.mark.slow
def test_eval_results_do_not_depend_on_the_batch_size(trained: dict, tmp_path: Path) -> None:
    """Greedy samples of 8 prompts of mixed lengths: the same at batch sizes 1, 3 and 8."""
    prompts = "[The class,A,The return statement is,An object of the,The,It is,A function,The list]"
    for kind, run in trained.items():
        results = [
            evaluate(
                _eval_cfg(
                    f"ckpt={run['ckpt']}", "sampler=greedy", "sampler.n_tokens=8", "sampler.steps=8",
                    f"prompt={prompts}", "num_samples=1",
                    f"batch_size={size}", "val_batches=1", "task=false",
                    f"run_dir={tmp_path / kind / str(size)}",
                )
            )
            for size in (1, 3, 8)
        ]  # fmt: skip
        samples = [result["samples"] for result in results]
        assert len(samples[0]) == 8 and samples[0] == samples[1] == samples[2], kind
        assert len({result["metrics"]["val/ppl"] for result in results}) == 1, kind


@pytest.mark.slow
def test_eval_of_an_ar_checkpoint_reports_its_exact_training_perplexity(
    trained: dict, tmp_path: Path
) -> None:
    ar = trained["autoregressive"]
    cfg = _eval_cfg(f"ckpt={ar['ckpt']}", "val_batches=2", "num_samples=2", f"run_dir={tmp_path}")
    result = evaluate(cfg)
    assert result["lm"] == "autoregressive"
    assert result["metrics"]["val/ppl"] == pytest.approx(ar["metrics"]["val/ppl"], rel=1e-6)
    assert result["metrics"]["gen/nfe"] == 8  # one pass per token, left to right
    assert json.loads((tmp_path / "eval.json").read_text())["metrics"] == result["metrics"]


@pytest.mark.slow
def test_eval_reports_task_accuracy_for_a_synthetic_checkpoint(tmp_path: Path) -> None:
    run = _train(
        tmp_path / "run", "data=reversal", "data.corpus.n_entities=40",
        "data.corpus.both_fraction=0.5", "data.val_fraction=0.1",
    )  # fmt: skip
    cfg = _eval_cfg(f"ckpt={run['ckpt']}", "num_samples=2", f"run_dir={tmp_path}")
    metrics = evaluate(cfg)["metrics"]
    for kind in ("forward", "reverse", "reverse_infill"):
        assert 0.0 <= metrics[f"task/{kind}"] <= 1.0
        assert metrics[f"task/{kind}/n"] == 10  # 20 pairs, half of them one-way

    # The eval's remasking strategy decides the order the queries are filled in.
    model = DiffusionLM.load_from_checkpoint(run["ckpt"])
    task, options = synthetic_task(data_config(model, cfg))
    for strategy in ("random", "margin"):
        overrides = [f"ckpt={run['ckpt']}", "num_samples=1", f"remasking={strategy}",
                     "val_batches=0", f"run_dir={tmp_path / strategy}"]  # fmt: skip
        ordered = evaluate(_eval_cfg(*overrides))["metrics"]
        expected = task_accuracy(model, task, settings={"remasking": strategy}, **options)
        for kind, value in expected["accuracy"].items():
            assert ordered[f"task/{kind}"] == value, (strategy, kind)


@pytest.mark.slow
def test_eval_bad_inputs_fail_with_one_line(trained: dict, tmp_path: Path) -> None:
    missing = run_cli(
        "llada.eval", "ckpt=/nonexistent/last.ckpt", f"hydra.run.dir={tmp_path}", check=False
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: checkpoint not found: /nonexistent/last.ckpt "
        "(pass the path of a .ckpt written by llada.train)"
    ]
    mdm = trained["diffusion"]["ckpt"]
    with pytest.raises(FileNotFoundError, match="judge checkpoint not found"):
        evaluate(_eval_cfg(f"ckpt={mdm}", "judge=/nonexistent/ar.ckpt", f"run_dir={tmp_path}"))
    with pytest.raises(ValueError, match="is a diffusion model; a judge must be a causal LM"):
        evaluate(_eval_cfg(f"ckpt={mdm}", f"judge={mdm}", f"run_dir={tmp_path}"))
    with pytest.raises(ValueError, match=r"sampler\.steps=0 is out of range: allowed steps >= 1"):
        evaluate(_eval_cfg(f"ckpt={mdm}", "sampler.steps=0", f"run_dir={tmp_path}"))
    with pytest.raises(ValueError, match="need a strategy"):
        sampling_settings(OmegaConf.create({"remasking": {"threshold": 0.5}}))
