"""Bad input through the real CLIs: exit code 2, one `error:` line naming the fix, nothing lost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import TINY_RUN
from test_end_to_end import run_cli

pytestmark = pytest.mark.slow

TRAIN_CASES = [
    (["masking.t_min=0.8", "masking.t_max=0.2"], "masking needs 0 <= t_min < t_max <= 1"),
    (["masking=power", "masking.k=0"], "masking.k must be > 0"),
    (["masking=fixed_ratio", "masking.ratio=1.5"], "masking.ratio must be in (0, 1]"),
    (["sampler.temperature=-1"], "temperature must be >= 0"),
    (["sampler.top_p=0"], "top_p must be in (0, 1]"),
    (["sampler.top_k=0"], "top_k must be >= 1"),
    (["sampler.steps=0"], "sampler.steps must be >= 1"),
    (["sampler.n_tokens=0"], "sampler.n_tokens must be >= 1"),
    (["sampler.block_length=0"], "sampler.block_length must be >= 1 or null"),
    (["sampler.cfg_scale=-1"], "sampler.cfg_scale must be >= 0"),
    (["remasking=threshold", "remasking.threshold=2"], "remasking.threshold must be in [0, 1]"),
    (["remasking=remdm", "remasking.sigma=-1"], "remasking.sigma must be in [0, 1)"),
    (["ckpt_path=/nonexistent.ckpt"], "ckpt_path=/nonexistent.ckpt does not exist"),
    (["ckpt_path=last"], "ckpt_path=last but"),
    (["data=text_files", "data.path=/nonexistent"], "no .txt file matches '/nonexistent'"),
    (
        ["data.block_size=100000", "model.max_len=100000"],
        "fewer than one block of block_size=100000",
    ),
    (["global_batch_size=12"], "global_batch_size=12 is not a multiple of data.batch_size"),
    (["model=distilbert", "model.pretrained=no-such/model"], "the Hugging Face hub is unreachable"),
    (["trainer=gpu"], "trainer=cpu runs anywhere"),  # this machine has no GPU
    (["optim.optimizer.lr=1e30", "trainer.max_steps=3"], "the last good checkpoint is kept"),
]


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("earlier")
    run_cli("llada.train", *TINY_RUN, "trainer.max_steps=2", f"hydra.run.dir={run_dir}")
    return run_dir


def assert_one_line_error(proc, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, last


@pytest.mark.parametrize(
    ("overrides", "expected"), TRAIN_CASES, ids=[c[1][:40] for c in TRAIN_CASES]
)
def test_train_rejects_bad_input(overrides, expected, earlier_run: Path, tmp_path: Path) -> None:
    before = digest(earlier_run)
    proc = run_cli(
        "llada.train", *TINY_RUN, "trainer.max_steps=1", *overrides,
        f"hydra.run.dir={tmp_path / 'new'}", check=False,
    )  # fmt: skip
    assert_one_line_error(proc, expected)
    assert digest(earlier_run) == before


def test_training_into_an_earlier_run_is_refused(earlier_run: Path) -> None:
    before = digest(earlier_run / "checkpoints")
    proc = run_cli(
        "llada.train", *TINY_RUN, "trainer.max_steps=1", f"hydra.run.dir={earlier_run}", check=False
    )
    assert_one_line_error(proc, "already holds checkpoints")
    assert digest(earlier_run / "checkpoints") == before


def test_same_seed_same_metrics_and_samples(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        run_cli("llada.train", *TINY_RUN, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / name}")
        runs.append(tmp_path / name)
    for artefact in ("samples.jsonl", "metrics.csv"):
        first, second = ((run / artefact).read_text() for run in runs)
        if artefact == "samples.jsonl":  # wall-clock fields differ; everything else must not
            strip = lambda text: [line.split('"seconds"')[0] for line in text.splitlines()]  # noqa: E731
            first, second = strip(first), strip(second)
        assert first == second, artefact


def test_generate_rejects_bad_input(earlier_run: Path, tmp_path: Path) -> None:
    before = digest(earlier_run)
    ckpt = earlier_run / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    cases = [
        ([], "no checkpoint given"),
        (["ckpt=/nonexistent.ckpt"], "checkpoint not found: /nonexistent.ckpt"),
        ([f"ckpt={truncated}"], "cannot load checkpoint"),
        ([f"ckpt={ckpt}", f"prompt='{'word ' * 40}'"], "exceeds the model context"),
        ([f"ckpt={ckpt}", "prompt='nothing to fill [MASK]x0'"], "no [MASK] slot"),
    ]
    for overrides, expected in cases:
        proc = run_cli("llada.generate", *overrides, "hydra.run.dir=.", check=False)
        assert_one_line_error(proc, expected)
    assert digest(earlier_run) == before
