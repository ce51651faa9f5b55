"""Train -> checkpoint -> load -> generate through the real entry points, on tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, SCRATCH_RUN_DIR, TINY_RUN, compose_config, run_cli
from llada import DiffusionLM
from llada.text_model import load_text_model
from llada.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", overrides=[*TINY_RUN, f"run_dir={run_dir}"])
    return train(cfg)


def test_train_writes_checkpoint_metrics_and_samples(trained: dict) -> None:
    run_dir: Path = trained["run_dir"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "metrics.csv").is_file()
    metrics = trained["metrics"]
    assert metrics["val/ppl"] > 1.0 and metrics["unigram_ppl"] > 1.0
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 1
    assert {"text", "sampler", "remasking", "steps", "nfe", "seconds"} <= set(records[0])
    assert records[0]["nfe"] == 8


def test_checkpoint_loads_safely_and_generates(trained: dict) -> None:
    path = trained["run_dir"] / "checkpoints" / "last.ckpt"
    torch.load(path, weights_only=True)  # plain data only: no pickled code in our checkpoints
    model = DiffusionLM.load_from_checkpoint(path)
    assert model.tokenizer.mask_token_id is not None
    ids = torch.randint(0, len(model.tokenizer), (2, 10))
    assert model(ids).shape == (2, 10, len(model.tokenizer))
    original = trained["model"].eval()
    torch.testing.assert_close(model(ids), original(ids))

    first = model.generate("the", n_tokens=8, steps=8, sampler="greedy", seed=0)
    again = model.generate("the", n_tokens=8, steps=8, sampler="greedy", seed=0)
    assert isinstance(first, str) and first == again
    batch = model.generate(["a", "the list of"], n_tokens=8, steps=4, sampler="multinomial", seed=1)
    assert isinstance(batch, list) and len(batch) == 2
    info = model.generate_with_info(None, 8, steps=4, remasking="random", seed=0)
    assert info.nfe == 4 and info.tokens.shape == (1, 8)
    with pytest.raises(ValueError, match="exceeds the model context"):
        model.generate("word " * 40, n_tokens=8)


def test_validation_elbo_is_reproducible(trained: dict) -> None:
    trainer, model = trained["trainer"], trained["model"]
    first = trainer.validate(model, datamodule=trainer.datamodule, verbose=False)[0]["val/ppl"]
    second = trainer.validate(model, datamodule=trainer.datamodule, verbose=False)[0]["val/ppl"]
    assert first == second


def test_generate_cli_and_missing_checkpoint(trained: dict) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    common = [f"ckpt={ckpt}", "sampler=greedy", "n_tokens=8", "sampler.steps=8", SCRATCH_RUN_DIR]
    one = run_cli("llada.generate", *common, "prompt=the")
    two = run_cli("llada.generate", *common, "prompt=the")
    assert one.stdout.strip() and one.stdout == two.stdout

    missing = run_cli("llada.generate", "ckpt=/nonexistent/last.ckpt", SCRATCH_RUN_DIR, check=False)
    assert missing.returncode != 0
    error_lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert error_lines == ["error: checkpoint not found: /nonexistent/last.ckpt "
                           "(pass the path of a .ckpt written by llada.train)"]  # fmt: skip


def test_the_lightning_free_model_gives_the_same_texts_and_likelihoods(trained: dict) -> None:
    path = trained["run_dir"] / "checkpoints" / "last.ckpt"
    lightning_model, plain = DiffusionLM.load_from_checkpoint(path), load_text_model(path)
    assert not isinstance(plain, DiffusionLM)
    for options in ({"sampler": "greedy"}, {"sampler": "multinomial", "seed": 3}):
        ours = plain.generate(["the", "a list of"], n_tokens=8, steps=8, **options)
        assert ours == lightning_model.generate(
            ["the", "a list of"], n_tokens=8, steps=8, **options
        )
    args = ("the", " list of", 8, 4, 0)
    torch.testing.assert_close(plain.log_likelihood(*args), lightning_model.log_likelihood(*args))


def test_the_generate_cli_never_imports_lightning(trained: dict) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    argv = [
        "generate",
        f"ckpt={ckpt}",
        "prompt=the",
        "sampler=greedy",
        "sampler.steps=8",
        "n_tokens=8",
        SCRATCH_RUN_DIR,
    ]
    code = (
        "import sys\nfrom llada.generate import main\n"
        f"sys.argv = {argv!r}\nmain()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics', "
        "'pytorch_lightning', 'datasets'})\nprint('imported:', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()  # the text
    assert "imported: []" in done.stderr


def test_train_cli_multirun_runs_two_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    run_cli(
        "llada.train",
        "-m",
        "remasking=random,low_confidence",
        *TINY_RUN,
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    samples = sorted(sweep_dir.glob("*/samples.jsonl"))
    assert len(samples) == 2
    strategies = {json.loads(p.read_text().splitlines()[0])["remasking"] for p in samples}
    assert strategies == {"random", "low_confidence"}
    assert all((p.parent / "checkpoints" / "last.ckpt").is_file() for p in samples)


def test_distilbert_backbone_trains(tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        overrides=[
            *TINY_RUN, "model=distilbert", "sampler=multinomial", "model.dim=32",
            "model.hidden_dim=64", "trainer.max_steps=3", f"run_dir={tmp_path}",
        ],
    )  # fmt: skip
    result = train(cfg)
    model = DiffusionLM.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert type(model.backbone).__name__ == "HFMaskedLM"
    assert isinstance(model.generate("the", n_tokens=4, steps=4), str)
    assert result["trainer"].global_step == 3


def test_train_cli_bad_inputs_fail_with_one_line(tmp_path: Path) -> None:
    missing = run_cli(
        "llada.train", "ckpt_path=/nonexistent.ckpt", f"hydra.run.dir={tmp_path}", check=False
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "error: ckpt_path=/nonexistent.ckpt does not exist (pass a .ckpt file or 'last')"
    )
    unknown = run_cli("llada.train", "model=nope", f"hydra.run.dir={tmp_path}", check=False)
    assert unknown.returncode != 0
    assert "Could not find 'model/nope'" in unknown.stderr
    assert "distilbert" in unknown.stderr and "tiny" in unknown.stderr


def test_log_likelihood_prefers_corpus_text_and_logs_t_buckets(trained: dict) -> None:
    model = DiffusionLM.load_from_checkpoint(trained["run_dir"] / "checkpoints" / "last.ckpt")
    values, errors = model.log_likelihood(
        ["the", "the"], ["object is", "is object"], mc_samples=16, batch_size=8, return_stderr=True
    )
    assert values.shape == (2,) and bool(torch.isfinite(values).all()) and bool((values < 0).all())
    assert bool((errors >= 0).all())
    again = model.log_likelihood(
        ["the", "the"], ["object is", "is object"], mc_samples=16, batch_size=8
    )
    torch.testing.assert_close(again, values)  # fixed seed: the same estimate
    header = (trained["run_dir"] / "metrics.csv").read_text().splitlines()[0]
    assert "train_loss_by_t/" in header


def test_distilbert_pretrained_from_local_directory(tmp_path: Path) -> None:
    """model.pretrained=<dir> brings weights and tokenizer (the hub path, exercised offline)."""
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM

    words = sorted({w.lower() for w in (REPO / "README.md").read_text().split() if w.isalpha()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))  # transformers 5 keyword
    assert len(tokenizer) == len(vocab)
    pretrained = tmp_path / "distilbert"
    tokenizer.save_pretrained(pretrained)
    config = DistilBertConfig(vocab_size=len(vocab), dim=48, n_layers=1, n_heads=2, hidden_dim=96)
    DistilBertForMaskedLM(config).save_pretrained(pretrained)

    cfg = compose_config(
        "train",
        overrides=[
            *TINY_RUN, "model=distilbert", f"model.pretrained={pretrained}",
            "trainer.max_steps=2", f"run_dir={tmp_path / 'run'}",
        ],
    )  # fmt: skip
    train(cfg)
    model = DiffusionLM.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.backbone.model.config.dim == 48  # the pretrained shape, not conf/model's
    assert model.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert model.tokenizer.mask_token == "[MASK]"
    assert isinstance(model.generate("the model", n_tokens=4, steps=4), str)


@pytest.mark.parametrize(
    "strategy", ["random", "low_confidence", "margin", "entropy", "threshold", "remdm"]
)
def test_every_remasking_strategy_through_the_module(trained: dict, strategy: str) -> None:
    model = DiffusionLM.load_from_checkpoint(trained["run_dir"] / "checkpoints" / "last.ckpt")
    out = model.generate_with_info(
        "the", 8, steps=8, remasking=strategy, seed=0, record=True, eos_last=True, cfg_scale=0.5
    )
    assert isinstance(out.texts[0], str)
    assert len(out.trajectory) >= 1
    assert not bool((out.trajectory[-1] == model.mask_id).any())  # every mask filled
    assert out.nfe >= 2  # guidance doubles the passes


def test_sft_and_synthetic_data_options_train_and_sample(tmp_path: Path) -> None:
    run_cli(
        "llada.train", "-m", "data=sft_jsonl,reversal,sudoku", "model.dim=32", "model.n_layers=1",
        "model.n_heads=2", "trainer.max_steps=3", "trainer.val_check_interval=3",
        "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false", "sampler.steps=16",
        "callbacks.samples.num_samples=1", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    samples = sorted(tmp_path.glob("*/samples.jsonl"))
    assert len(samples) == 3
    assert all(p.read_text().strip() for p in samples)


def test_ragged_batch_equals_one_by_one_greedy(trained: dict) -> None:
    model = DiffusionLM.load_from_checkpoint(trained["run_dir"] / "checkpoints" / "last.ckpt")
    prompts = ["the", "a list of the", "object"]
    settings = {"n_tokens": 8, "steps": 8, "sampler": "greedy"}
    batched = model.generate(prompts, **settings)
    assert batched == [model.generate(p, **settings) for p in prompts]


def test_infill_keeps_the_text_and_fills_every_slot(trained: dict) -> None:
    model = DiffusionLM.load_from_checkpoint(trained["run_dir"] / "checkpoints" / "last.ckpt")
    out = model.infill_with_info(["the [MASK]x3 of a", "[MASK]x2 object"], steps=4, seed=0)
    assert out.nfe <= 4
    assert not bool((out.tokens == model.mask_id).any())
    first = model.tokenizer.decode(out.tokens[0].tolist(), skip_special_tokens=True)
    assert first.startswith("the ") and first.endswith(" of a")
    assert out.texts[1].endswith("object")
    with pytest.raises(ValueError, match="no \\[MASK\\] slot"):
        model.infill("nothing to fill")


def test_generate_cli_threshold_prints_text_and_nfe(trained: dict) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "llada.generate", f"ckpt={ckpt}", "prompt=the", "remasking=threshold", "n_tokens=8",
        SCRATCH_RUN_DIR,
    )  # fmt: skip
    assert proc.stdout.strip()
    assert "nfe=" in proc.stderr and "remasking=threshold" in proc.stderr
    infill = run_cli("llada.generate", f"ckpt={ckpt}", "prompt='the [MASK]x3 of'", SCRATCH_RUN_DIR)
    assert infill.stdout.strip().startswith("the")


def test_generate_cli_writes_gif_and_html(trained: dict, tmp_path: Path) -> None:
    from PIL import Image

    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    gif, html = tmp_path / "d.gif", tmp_path / "d.html"
    run_cli(
        "llada.generate", f"ckpt={ckpt}", "prompt=the", "sampler=greedy", "n_tokens=8",
        "sampler.steps=8", "visualize=true", f"viz.gif={gif}", f"viz.html={html}",
        SCRATCH_RUN_DIR,
    )  # fmt: skip
    with Image.open(gif) as image:
        assert image.n_frames == 8
    assert "step" in html.read_text().lower()
