"""The lm-evaluation-harness adapter: lm_eval's own evaluator and CLI against the model `llada`."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_RUN, compose_config

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from llada.data.synthetic import reversal  # noqa: E402
from llada.lm_eval_adapter import LladaLM, cut_at, main  # noqa: E402
from llada.train import train  # noqa: E402

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GENERATE_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{choices[0]}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
TOY_DOCS = [
    {"context": "The return statement", "choices": [" is used", " of the", " class", " import"]},
    {"context": "A class", "choices": [" definition", " return", " object", " the"]},
    {"context": "If the object", "choices": [" is", " has", " list", " the"]},
    {"context": "", "choices": [" The", " a", " of", " list"]},  # an empty context is allowed
    {"context": "The list of", "choices": [" the", " and", " is", " object"]},
]
# Reversal facts a small model memorises in about half a minute on 2 CPU cores (measured: 0.90
# forward accuracy on 4 choices; 1 layer or batch 16 stay near chance in that budget).
REVERSAL_RUN = [
    "data=reversal", "data.corpus.n_entities=40", "data.corpus.both_fraction=0.0",
    "data.block_size=32", "data.batch_size=8", "data.val_fraction=0.1", "model.dim=64",
    "model.n_layers=2", "model.n_heads=4", "trainer.max_steps=1500",
    "trainer.val_check_interval=1500", "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false", "callbacks=minimal", "logger=none",
    "optim.optimizer.lr=5e-3", "optim.weight_decay=0.0", "optim.scheduler.warmup_steps=20",
]  # fmt: skip


def write_task(directory: Path, name: str, docs: list[dict], template: str = TASK_YAML) -> Path:
    """A local task (multiple choice by default): a jsonl file and its YAML, for --include_path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"label": 0, **doc}) + "\n" for doc in docs))
    (directory / f"{name}.yaml").write_text(template.format(name=name, data=data))
    return directory


def run_task(ckpt: Path, directory: Path, names: list[str], **model_args: object) -> dict:
    args = ",".join(f"{key}={value}" for key, value in {"ckpt": ckpt, **model_args}.items())
    manager = TaskManager(include_path=str(directory), include_defaults=False)
    return lm_eval.simple_evaluate(
        model="llada", model_args=args, tasks=names, task_manager=manager, bootstrap_iters=0
    )


def _train(run_dir: Path, *overrides: str) -> Path:
    cfg = compose_config("train", overrides=[*TINY_RUN, *overrides, f"run_dir={run_dir}"])
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "diffusion": _train(tmp_path_factory.mktemp("mdm")),
        "autoregressive": _train(tmp_path_factory.mktemp("ar"), "model=ar_tiny"),
        "block_diffusion": _train(
            tmp_path_factory.mktemp("bd3"), "objective=bd3", "objective.block_size=8"
        ),
    }


def _requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_cut_at_stops_at_the_first_stop_string() -> None:
    assert cut_at("a. b\n\nc", ["\n\n", "."]) == "a"
    assert cut_at("no stop here", ["\n\n", ""]) == "no stop here"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["diffusion", "autoregressive", "block_diffusion"])
def test_local_tasks_through_simple_evaluate(
    ckpts: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    directory = write_task(tmp_path / "tasks", "llada_toy_mc", TOY_DOCS)
    write_task(directory, "llada_toy_gen", TOY_DOCS, GENERATE_YAML)
    out = run_task(ckpts[kind], directory, ["llada_toy_mc", "llada_toy_gen"], mc_samples=4)
    assert 0.0 <= out["results"]["llada_toy_gen"]["exact_match,none"] <= 1.0
    generated = [s["filtered_resps"][0] for s in out["samples"]["llada_toy_gen"]]
    assert len(generated) == len(TOY_DOCS) and not any("." in text for text in generated)
    accuracy = out["results"]["llada_toy_mc"]["acc,none"]
    assert 0.0 <= accuracy <= 1.0
    assert out["n-samples"]["llada_toy_mc"]["effective"] == len(TOY_DOCS)
    scores = [resp for sample in out["samples"]["llada_toy_mc"] for resp in sample["resps"]]
    assert len(scores) == 4 * len(TOY_DOCS)  # one (log-likelihood, is_greedy) per choice
    assert all(math.isfinite(r[0][0]) and r[0][0] < 0 for r in scores)


@pytest.mark.slow
def test_loglikelihood_is_our_estimator_and_is_greedy_our_sampler(ckpts: dict[str, Path]) -> None:
    # Not "" as a prompt here: DiffusionLM.log_likelihood("", ...) builds a float tensor from the
    # empty id list (module.py); the adapter itself handles empty contexts (TOY_DOCS has one).
    pairs = [("The return statement", " is used"), ("A", " The class")]
    for kind, ckpt in ckpts.items():
        lm = LladaLM(ckpt=str(ckpt), mc_samples=8, greedy_check="decode")
        got = lm.loglikelihood(_requests("loglikelihood", pairs))
        for (context, continuation), (value, _) in zip(pairs, got, strict=True):
            expected = lm.model.log_likelihood(context, continuation, mc_samples=8, seed=0)
            assert value == pytest.approx(float(expected), rel=1e-5, abs=1e-5), kind
        # What our greedy sampler writes after a prompt (one token a step, one block) is greedy.
        out = lm.model.generate_with_info(
            "The class", 3, sampler="greedy", steps=3, block_length=None, stop_at_eos=False
        )
        context = [*lm.model.prefix_ids, *lm._encode("The class")]
        answer = out.tokens[0].tolist()
        assert lm.model.score_ids(context, answer, **lm.scoring)[1], kind
        wrong = [*answer[:-1], (answer[-1] + 1) % len(lm.tokenizer)]
        assert not lm.model.score_ids(context, wrong, **lm.scoring)[1], kind


@pytest.mark.slow
def test_loglikelihood_rolling(ckpts: dict[str, Path]) -> None:
    short, long = "The return statement is used", " ".join(["the list of the object"] * 12)
    ar = LladaLM(ckpt=str(ckpts["autoregressive"]))
    rolled = ar.loglikelihood_rolling(_requests("loglikelihood_rolling", [(short,), (long,)]))
    # One window: the exact log-likelihood after the start token, as log_likelihood gives it.
    assert rolled[0] == pytest.approx(float(ar.model.log_likelihood("", short)), rel=1e-5)
    assert len(ar._encode(long)) > ar.max_canvas and math.isfinite(rolled[1])  # several windows
    mdm = LladaLM(ckpt=str(ckpts["diffusion"]), mc_samples=4)
    bounds = mdm.loglikelihood_rolling(_requests("loglikelihood_rolling", [(short,), (long,)]))
    assert all(math.isfinite(b) and b < 0 for b in bounds)


@pytest.mark.slow
def test_generate_until_is_our_sampler_cut_at_until(ckpts: dict[str, Path]) -> None:
    lm = LladaLM(ckpt=str(ckpts["diffusion"]))
    full = lm.model.generate_with_info(
        "The class", 8, sampler="greedy", temperature=0.0, steps=8, seed=0
    ).texts[0]
    stop = full.split()[1] if len(full.split()) > 1 else "\n"
    [text] = lm.generate_until(
        _requests("generate_until", [("The class", {"until": [stop], "max_gen_toks": 8})])
    )
    assert text == cut_at(full, [stop])


@pytest.mark.slow
def test_results_do_not_depend_on_the_batch_size(ckpts: dict[str, Path]) -> None:
    """generate_until and loglikelihood: the same for batch sizes 1, 3 and 8 (mixed lengths)."""
    contexts = ["The class", "A", "The return statement is", "An object of the", "The", "It is",
                "A function that returns", "The list"]  # fmt: skip
    greedy = {"until": ["."], "max_gen_toks": 6}
    pairs = [(context, " is used") for context in contexts]
    for kind, ckpt in ckpts.items():
        texts, scores = [], []
        for size in (1, 3, 8):
            lm = LladaLM(ckpt=str(ckpt), batch_size=size, mc_samples=8)
            texts.append(
                lm.generate_until(_requests("generate_until", [(c, greedy) for c in contexts]))
            )
            scores.append(
                [value for value, _ in lm.loglikelihood(_requests("loglikelihood", pairs))]
            )
        assert texts[0] == texts[1] == texts[2], kind
        assert scores[0] == pytest.approx(scores[1]) and scores[0] == pytest.approx(scores[2]), kind


@pytest.mark.slow
def test_cli_runs_lm_eval_with_the_registered_model(ckpts: dict[str, Path], tmp_path: Path) -> None:
    directory = write_task(tmp_path / "tasks", "llada_toy_mc", TOY_DOCS[:3])
    command = [sys.executable, "-m", "llada.lm_eval_adapter", "--model", "llada",
               "--tasks", "llada_toy_mc", "--include_path", str(directory)]  # fmt: skip
    proc = subprocess.run(
        [*command, "--model_args", f"ckpt={ckpts['diffusion']},mc_samples=4",
         "--output_path", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [results] = (tmp_path / "out").rglob("results_*.json")
    accuracy = json.loads(results.read_text())["results"]["llada_toy_mc"]["acc,none"]
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.slow
def test_cli_bad_checkpoint_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """In process (lm_eval's CLI indexes its 14k tasks first: a subprocess costs twice that)."""
    directory = write_task(tmp_path / "tasks", "llada_toy_mc", TOY_DOCS[:1])
    monkeypatch.setattr(
        sys, "argv", ["lm_eval_adapter", "--model", "llada", "--tasks", "llada_toy_mc",
                      "--include_path", str(directory), "--model_args", "ckpt=/nonexistent.ckpt"],
    )  # fmt: skip
    # Its logging set-up would bind a handler to pytest's captured stderr for the whole session.
    monkeypatch.setattr("lm_eval.__main__.setup_logging", lambda *args, **kwargs: None)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: checkpoint not found: /nonexistent.ckpt")


@pytest.mark.slow
def test_trained_reversal_facts_score_above_chance(tmp_path: Path) -> None:
    """Forward facts the model was trained on, as 4-way multiple choice over people's names."""
    cfg = compose_config("train", overrides=[*REVERSAL_RUN, f"run_dir={tmp_path / 'run'}"])
    train(cfg)
    queries = reversal(n_entities=40, both_fraction=0.0).queries["forward"]
    names = [answer for _, answer in queries]
    rng = random.Random(0)
    docs = []
    for prompt, answer in queries:  # the other choices: names that end other facts
        choices = [answer, *rng.sample([n for n in names if n != answer], 3)]
        rng.shuffle(choices)
        docs.append(
            {
                "context": prompt,
                "choices": [f" {c}" for c in choices],
                "label": choices.index(answer),
            }
        )
    directory = write_task(tmp_path / "tasks", "llada_reversal_mc", docs)
    out = run_task(tmp_path / "run" / "checkpoints" / "last.ckpt", directory, ["llada_reversal_mc"])
    accuracy = out["results"]["llada_reversal_mc"]["acc,none"]
    assert out["n-samples"]["llada_reversal_mc"]["effective"] == len(queries) == 20
    print(f"reversal forward-fact accuracy: {accuracy:.3f} on {len(queries)} (chance 0.25)")
    assert accuracy >= 0.6, f"forward-fact accuracy {accuracy} (chance 0.25)"


def test_bad_greedy_check_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="greedy_check='nope'; allowed: one_pass, decode, none"):
        LladaLM(ckpt=str(tmp_path / "x.ckpt"), greedy_check="nope")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        LladaLM(ckpt=str(tmp_path / "x.ckpt"))
