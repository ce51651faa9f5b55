"""Bad input through the real CLIs: exit code 2, one `error:` line naming the fix, nothing lost.

Most cases run through the CLI entry (`llada.train:main`, `llada.generate:main`, what
`python -m` and the console scripts call, Hydra's argv parsing included) in one process per
table, because interpreter start-up (~5 s) would otherwise dominate; a few run as their own
process to check the exit status the shell sees.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCRATCH_RUN_DIR, TINY_RUN
from test_end_to_end import run_cli

pytestmark = pytest.mark.slow

# Caught by llada.config_schema when the config is composed, before any data or model is built.
SCHEMA_CASES = [
    (["sampler.top_p=1.5"], "sampler.top_p=1.5 is out of range: allowed 0 < top_p <= 1 or null"),
    (["sampler.top_p=0"], "sampler.top_p=0 is out of range: allowed 0 < top_p <= 1"),
    (["sampler.top_k=0"], "sampler.top_k=0 is out of range: allowed top_k >= 1 or null"),
    (["sampler.steps=0"], "sampler.steps=0 is out of range: allowed steps >= 1"),
    (["sampler.n_tokens=0"], "sampler.n_tokens=0 is out of range: allowed n_tokens >= 1"),
    (["sampler.block_length=0"], "sampler.block_length=0 is out of range: allowed block_length >= 1"),
    (["sampler.temperature=-1"], "sampler.temperature=-1 is out of range: allowed temperature >= 0"),
    (["sampler.cfg_scale=-1"], "sampler.cfg_scale=-1 is out of range: allowed cfg_scale >= 0"),
    (["sampler.steps=1"], "sampler.steps=1 is out of range: allowed sampler.steps >= the number of blocks"),
    (["masking.t_min=0.8", "masking.t_max=0.2"], "masking.t_min=0.8 is out of range: allowed masking.t_min < masking.t_max=0.2"),
    (["masking=power", "masking.k=0"], "masking.k=0 is out of range: allowed k > 0"),
    (["masking=fixed_ratio", "masking.ratio=1.5"], "masking.ratio=1.5 is out of range: allowed 0 < ratio <= 1"),
    (["remasking=threshold", "remasking.threshold=2"], "remasking.threshold=2 is out of range: allowed 0 <= threshold <= 1"),
    (["remasking=threshold", "remasking.threshold=null"], "remasking.threshold=null has the wrong type: allowed a number"),
    (["remasking=remdm", "remasking.sigma=-1"], "remasking.sigma=-1 is out of range: allowed 0 <= sigma < 1"),
    (["data.batch_size=0"], "data.batch_size=0 is out of range: allowed batch_size >= 1"),
    (["module.nonfinite_loss=maybe"], "module.nonfinite_loss=maybe is not an option: allowed one of stop, skip"),
    (["seed=abc"], "seed=abc has the wrong type: allowed an integer"),
    (["model.dim=30"], "model.dim=30 is out of range: allowed model.dim a multiple of 2 x model.n_heads=2"),
    (["+sampler.topp=0.9"], "sampler.topp=0.9 is not a known key"),
]  # fmt: skip
# Found once the run starts: missing files, data too short, hardware, a diverging loss.
RUNTIME_CASES = [
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

# Runs each argv through `module.main()` in this one process; writes [[exit code, stderr], ...].
BATCH_DRIVER = """
import contextlib, io, json, sys, traceback
from importlib import import_module
module, cases, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
main = import_module(module).main
results = []
for argv in cases:
    sys.argv = [module, *argv]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        except Exception:
            code = "uncaught"
            traceback.print_exc()
    results.append([code, stderr.getvalue()])
with open(out, "w") as handle:
    json.dump(results, handle)
"""


def run_cli_batch(module: str, cases: list[list[str]], out: Path) -> list[tuple[int | str, str]]:
    """(exit code, stderr) of `python -m module *argv` for each argv, paying start-up once."""
    proc = subprocess.run(
        [sys.executable, "-c", BATCH_DRIVER, module, json.dumps(cases), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(result) for result in json.loads(out.read_text())]


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


def assert_one_line_error(code: int | str, stderr: str, expected: str) -> None:
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, last


@pytest.fixture(scope="module")
def train_failures(earlier_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every train case through the CLI entry, each into its own new run dir.

    {"results": {overrides: (exit code, stderr, run dir)}, "untouched": the earlier run's files
    are byte for byte what they were before}.
    """
    tmp = tmp_path_factory.mktemp("bad-train")
    before = digest(earlier_run)
    overrides = [tuple(case) for case, _ in SCHEMA_CASES + RUNTIME_CASES]
    run_dirs = [tmp / str(index) for index in range(len(overrides))]
    argvs = [
        [*TINY_RUN, "trainer.max_steps=1", *case, f"hydra.run.dir={run_dir}"]
        for case, run_dir in zip(overrides, run_dirs, strict=True)
    ]
    results = run_cli_batch("llada.train", argvs, tmp / "results.json")
    return {
        "results": {
            case: (*result, run_dir)
            for case, result, run_dir in zip(overrides, results, run_dirs, strict=True)
        },
        "untouched": digest(earlier_run) == before,
    }


@pytest.mark.parametrize(
    ("overrides", "expected"), SCHEMA_CASES, ids=[" ".join(c[0]) for c in SCHEMA_CASES]
)
def test_bad_config_values_fail_before_any_work(overrides, expected, train_failures) -> None:
    code, stderr, run_dir = train_failures["results"][tuple(overrides)]
    assert_one_line_error(code, stderr, expected)
    assert train_failures["untouched"]
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.csv").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"), RUNTIME_CASES, ids=[c[1][:40] for c in RUNTIME_CASES]
)
def test_train_rejects_bad_input(overrides, expected, train_failures) -> None:
    code, stderr, _ = train_failures["results"][tuple(overrides)]
    assert_one_line_error(code, stderr, expected)
    assert train_failures["untouched"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(["sampler.top_p=1.5"], "sampler.top_p=1.5 is out of range"), RUNTIME_CASES[0]],
)
def test_exit_status_of_a_real_process(overrides, expected, tmp_path: Path) -> None:
    proc = run_cli(
        "llada.train", *TINY_RUN, *overrides, f"hydra.run.dir={tmp_path / 'new'}", check=False
    )
    assert_one_line_error(proc.returncode, proc.stderr, expected)


def test_training_into_an_earlier_run_is_refused(earlier_run: Path) -> None:
    before = digest(earlier_run / "checkpoints")
    proc = run_cli(
        "llada.train", *TINY_RUN, "trainer.max_steps=1", f"hydra.run.dir={earlier_run}", check=False
    )
    assert_one_line_error(proc.returncode, proc.stderr, "already holds checkpoints")
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
        # compose-time checks: sampler/remasking are optional groups of generate.yaml
        ([f"ckpt={ckpt}", "sampler=greedy", "sampler.top_p=2"], "sampler.top_p=2 is out of range"),
        ([f"ckpt={ckpt}", "remasking=threshold", "remasking.threshold=null"], "remasking.threshold=null has the wrong type"),
        ([f"ckpt={ckpt}", "n_tokens=0"], "n_tokens=0 is out of range: allowed n_tokens >= 1 or null"),
    ]  # fmt: skip
    argvs = [[*overrides, SCRATCH_RUN_DIR] for overrides, _ in cases]
    results = run_cli_batch("llada.generate", argvs, tmp_path / "results.json")
    for (code, stderr), (_, expected) in zip(results, cases, strict=True):
        assert_one_line_error(code, stderr, expected)
    assert digest(earlier_run) == before
