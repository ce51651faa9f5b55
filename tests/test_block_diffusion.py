"""Block diffusion (objective=bd3): exact cache, its limits (MDM, left to right), bad input."""

from __future__ import annotations

import csv
import itertools
import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import SCRATCH_RUN_DIR, TINY_RUN, compose_config, run_cli
from llada import DiffusionLM
from llada.diffusion.block_decoding import block_causal, training_pattern
from llada.diffusion.block_diffusion import BlockDiffusion
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.remasking import LowConfidenceRemasking
from llada.diffusion.schedules import LinearSchedule
from llada.diffusion.token_choice import Greedy
from llada.models.hf import distilbert
from llada.models.native import BlockKVCache, NativeTransformer
from llada.train import train

VOCAB, MASK, EOS = 13, 12, 11


def tiny(vocab: int = VOCAB, max_len: int = 24, seed: int = 0) -> NativeTransformer:
    torch.manual_seed(seed)
    return NativeTransformer(vocab, dim=32, n_layers=2, n_heads=2, max_len=max_len).eval()


def training_logits(net: NativeTransformer, noisy: torch.Tensor, clean: torch.Tensor, size: int):
    """The one-pass training forward over [x_t ; x_0]: logits (B, L, V) of the noisy half."""
    length = clean.shape[1]
    both = torch.cat([noisy, clean], dim=1)
    positions = torch.arange(length).repeat(2)
    return net(both, None, attention=training_pattern(length, size), positions=positions)[
        :, :length
    ]


@pytest.mark.parametrize(("size", "prompt"), [(1, 0), (3, 5), (4, 8), (8, 5), (8, 13)])
def test_cached_block_logits_equal_the_training_forward(size: int, prompt: int) -> None:
    net = tiny()
    clean = torch.randint(0, 11, (2, 24))
    noisy = clean.clone()
    noisy[:, prompt:] = torch.where(torch.rand(2, 24 - prompt) < 0.6, MASK, clean[:, prompt:])
    expected = training_logits(net, noisy, clean, size)  # (B, L, V)
    for block in range(prompt // size, math.ceil(24 / size)):
        start, end = block * size, min((block + 1) * size, 24)
        cache = BlockKVCache()
        if start:  # the clean blocks before it, encoded once
            cache.record = start
            net(clean[:, :start], None, kv=cache, attention=block_causal(start, size))
            cache.recorded()
        pattern = torch.ones(end - start, start + end - start, dtype=torch.bool)
        cached = net(noisy[:, start:end], None, kv=cache, attention=pattern)
        torch.testing.assert_close(cached, expected[:, start:end], atol=1e-5, rtol=0)


class CallSpy:
    """A backbone wrapper that keeps the current block's ids and logits of every pass."""

    def __init__(self, net: NativeTransformer) -> None:
        self.backbone, self.max_len, self.calls = net, net.max_len, []  # its cache is used

    def __call__(self, ids, attention_mask=None, **options):
        assert "kv" in options  # the exact cache is in use
        logits = self.backbone(ids, attention_mask, **options)  # (N, V) at the block's positions
        block = int(options["output_mask"][0].sum())
        self.calls.append((ids[:, -block:].clone(), logits.view(ids.shape[0], block, -1)))
        return logits


@pytest.mark.parametrize(("size", "prompt"), [(2, 3), (4, 4), (4, 6), (8, 1)])
def test_decoder_steps_see_what_training_sees(size: int, prompt: int) -> None:
    """Each block's first step (all its masks) gives the training forward's logits of that
    block, with the decoded blocks before it as the clean context: one pass per step (the
    step that starts a block also caches the blocks before it)."""
    net = tiny()
    spy = CallSpy(net)
    canvas = torch.cat([torch.randint(0, 11, (1, prompt)), torch.full((1, 20 - prompt), MASK)], 1)
    final = BlockDiffusion(block_size=size, mask_id=MASK).decode(
        spy, canvas, steps=size, chooser=Greedy(), remasking=LowConfidenceRemasking(),
        gen_start=prompt,
    ).tokens  # fmt: skip
    call = 0  # one token per step: a block with n masks takes n passes
    for block in range(prompt // size, math.ceil(20 / size)):
        start, end = block * size, min((block + 1) * size, 20)
        noisy = final.clone()
        noisy[:, max(start, prompt) : end] = MASK
        ids, logits = spy.calls[call]
        assert torch.equal(ids, noisy[:, start:end])
        expected = training_logits(net, noisy, final, size)[:, start:end]
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
        call += end - max(start, prompt)
    assert call == len(spy.calls)


@pytest.mark.parametrize("size", [1, 3, 4, 8])
def test_greedy_decoding_with_and_without_the_cache_is_identical(size: int) -> None:
    net = tiny()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1], [2]]  # mixed lengths, left padded
    width = max(map(len, prompts)) + 12
    canvas = torch.full((3, width), MASK)
    attention = torch.zeros_like(canvas)
    for row, ids in enumerate(prompts):
        canvas[row, width - 12 - len(ids) : width - 12] = torch.tensor(ids)
        attention[row, width - 12 - len(ids) :] = 1
    tokens = {}
    for cached in (True, False):
        objective = BlockDiffusion(block_size=size, mask_id=MASK, kv_cache=cached)
        tokens[cached] = objective.decode(
            net, canvas, steps=2, chooser=Greedy(), remasking=LowConfidenceRemasking(),
            attention_mask=attention, gen_start=width - 12,
        ).tokens  # fmt: skip
    assert torch.equal(tokens[True], tokens[False])
    assert not bool((tokens[True][attention.bool()] == MASK).any())  # everything filled
    assert bool((tokens[True][~attention.bool()] == MASK).all())  # padding untouched


def test_decoding_past_the_context_slides_a_window() -> None:
    """40 tokens from a 16-token context. Within the context the cache is exact; past it the
    cached keys keep what their block saw when it was encoded (a streaming cache), while the
    uncached decoder recomputes the window without the dropped blocks, so the two may differ."""
    net = tiny(max_len=16)
    canvas = torch.cat([torch.tensor([[1, 2, 3, 4, 5]]), torch.full((1, 35), MASK)], dim=1)
    results = [
        BlockDiffusion(block_size=4, mask_id=MASK, kv_cache=cached).decode(
            net, canvas, steps=4, chooser=Greedy(), remasking=LowConfidenceRemasking(),
            gen_start=5,
        )
        for cached in (True, False)
    ]  # fmt: skip
    assert torch.equal(results[0].tokens[:, :16], results[1].tokens[:, :16])
    assert not bool((results[0].tokens == MASK).any())
    assert not bool((results[1].tokens == MASK).any())


def test_a_row_stops_after_the_block_in_which_it_commits_eos() -> None:
    net = tiny()

    def eos_loving(ids, attention_mask=None, **options):  # a model that always predicts EOS
        logits = net(ids, attention_mask, **options)
        return logits + 100.0 * (torch.arange(VOCAB) == EOS)

    canvas = torch.cat([torch.tensor([[1, 2]]), torch.full((1, 18), MASK)], dim=1)
    result = BlockDiffusion(block_size=4, mask_id=MASK).decode(
        eos_loving, canvas, steps=4, chooser=Greedy(), remasking=LowConfidenceRemasking(),
        gen_start=2, eos_id=EOS,
    )  # fmt: skip
    assert bool((result.tokens[0, 2:] == EOS).all())
    # Block 0 holds the prompt and 2 masks (2 passes); then the row stops: no cache pass,
    # no later block.
    assert result.nfe == 2


def test_block_size_of_the_sequence_is_the_mdm_loss() -> None:
    net = tiny()
    ids = torch.randint(0, 11, (4, 24))
    schedule = LinearSchedule()
    mdm = MaskedDiffusion(mask_id=MASK, schedule=schedule)
    bd3 = BlockDiffusion(block_size=24, mask_id=MASK, schedule=schedule, zero_mask_prob=False)
    generator = partial(lambda: torch.Generator().manual_seed(7))
    expected, _, t_mdm = mdm.weighted_nll(net, ids, None, generator(), full_range=True)
    block_nll, _, t_bd3 = bd3.weighted_nll(net, ids, None, generator(), (0.0, 1.0))
    assert torch.equal(t_bd3[:, 0], t_mdm)  # the same draws: the same masks
    torch.testing.assert_close(block_nll[:, 0], expected, rtol=1e-5, atol=1e-5)
    # ... and the training losses, global RNG included (random_length off for the MDM).
    mdm.random_length_prob = 0.0
    torch.manual_seed(3)
    mdm_loss = mdm.training_loss(net, {"input_ids": ids}).loss
    torch.manual_seed(3)
    bd3_loss = bd3.training_loss(net, {"input_ids": ids}).loss
    torch.testing.assert_close(bd3_loss, mdm_loss, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def exact_left_to_right_nll(net: NativeTransformer, ids: torch.Tensor) -> torch.Tensor:
    """Block size 1's bound in closed form: every token masked once, E_t[1{masked}/t] = 1, so the
    bound is sum_i -log p(x_i | x_<i) from one pass with the whole noisy half masked."""
    logits = training_logits(net, torch.full_like(ids, 3), ids, 1).float()  # (B, L, V)
    logits[..., 3] = float("-inf")  # zero_mask_prob
    return -logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0].sum(-1)  # (B,)


def test_block_size_one_is_a_normalised_left_to_right_model() -> None:
    """Vocabulary of 3 tokens (+ the mask): the bound's probabilities of all 3^4 sequences sum
    to 1, and the Monte-Carlo validation estimate agrees with the exact bound."""
    net = tiny(vocab=4)
    everything = torch.tensor(list(itertools.product(range(3), repeat=4)))  # (81, 4)
    exact = exact_left_to_right_nll(net, everything)  # (81,)
    assert float(torch.exp(-exact.double()).sum()) == pytest.approx(1.0, abs=1e-5)
    objective = BlockDiffusion(block_size=1, mask_id=3, schedule=LinearSchedule(eps=0.0))
    rows = everything[[5, 40]].repeat_interleave(2000, dim=0)  # (4000, 4)
    with torch.no_grad():
        draws = objective.validation_nll(net, {"input_ids": rows}, torch.Generator().manual_seed(0))
    for index, row in enumerate((5, 40)):
        values = draws.nll[index * 2000 : (index + 1) * 2000].detach().double()
        error = values.std() / math.sqrt(values.numel())
        assert abs(float(values.mean() - exact[row])) < 4 * float(error)


@torch.no_grad()
def exact_block_bound(net: NativeTransformer, ids: torch.Tensor, size: int) -> float:
    """The NELBO by enumeration of every mask subset of every block, linear schedule (eps 0):
    a subset S of a block of n has weight E_t[t^|S| (1-t)^(n-|S|) / t] = B(|S|, n - |S| + 1)."""
    total = 0.0
    length = ids.shape[1]
    for start in range(0, length, size):
        n = min(size, length - start)
        for subset in itertools.product([False, True], repeat=n):
            k = sum(subset)
            if not k:
                continue
            noisy = ids.clone()
            noisy[0, start : start + n][torch.tensor(subset)] = 3
            logits = training_logits(net, noisy, ids, size).float()[0]
            logits[:, 3] = float("-inf")
            nll = -logits.log_softmax(-1).gather(-1, ids[0, :, None])[:, 0]
            masked = torch.zeros(length, dtype=torch.bool)
            masked[start : start + n] = torch.tensor(subset)
            beta = math.gamma(k) * math.gamma(n - k + 1) / math.gamma(n + 1)
            total += beta * float(nll[masked].sum())
    return total


def test_the_monte_carlo_bound_agrees_with_enumeration_for_blocks_of_two() -> None:
    net = tiny(vocab=4)
    ids = torch.tensor([[0, 2, 1, 1, 0]])  # blocks of 2: [0 2] [1 1] [0]
    exact = exact_block_bound(net, ids, 2)
    objective = BlockDiffusion(block_size=2, mask_id=3, schedule=LinearSchedule(eps=0.0))
    draws = objective.validation_nll(
        net, {"input_ids": ids.repeat(4000, 1)}, torch.Generator().manual_seed(1)
    ).nll.double()
    error = draws.std() / math.sqrt(draws.numel())
    assert abs(float(draws.mean()) - exact) < 4 * float(error)


def test_clip_search_keeps_the_lowest_variance_range() -> None:
    net = tiny()
    objective = BlockDiffusion(block_size=4, mask_id=MASK, clip_search=[[0.0, 1.0], [0.45, 0.95]])
    batch = {"input_ids": torch.randint(0, 11, (16, 24))}
    for seed in range(3):
        objective.validation_nll(net, batch, torch.Generator().manual_seed(seed))
    summary = objective.validation_summary()
    variances = [summary["val/loss_var/t0-1"], summary["val/loss_var/t0.45-0.95"]]
    best = [(0.0, 1.0), (0.45, 0.95)][variances.index(min(variances))]
    assert objective.clip == best == (summary["val/clip_t_min"], summary["val/clip_t_max"])
    assert objective.training_range() == best
    torch.manual_seed(0)
    out = objective.training_loss(net, batch)  # drawn in the chosen range, its spread logged
    assert float(out.logs["train/loss_var"]) > 0
    restored = BlockDiffusion(block_size=4, mask_id=MASK)
    restored.load_state(objective.state())
    assert restored.clip == best


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BlockDiffusion(block_size=0, mask_id=MASK), "objective.block_size must be >= 1"),
        (
            lambda: BlockDiffusion(block_size=32, mask_id=MASK).check_backbone(tiny()),
            "objective.block_size=32 is larger than the model context 24",
        ),
        (
            lambda: BlockDiffusion(block_size=4, mask_id=MASK).check_backbone(
                distilbert(vocab_size=20, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
            ),
            "objective=bd3 needs a bidirectional backbone that takes attention patterns",
        ),
        (
            lambda: BlockDiffusion(block_size=4, mask_id=MASK, clip_search=[[0.8, 0.3]]),
            "objective.clip_search entry [0.8, 0.3] must be [t_min, t_max]",
        ),
    ],
    ids=["zero", "larger-than-context", "hf-backbone", "bad-clip"],
)
def test_bad_block_diffusion_input_fails_in_one_line(build, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        build()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ through the entry points
@pytest.fixture(scope="module")
def bd3_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("bd3")
    overrides = [
        *TINY_RUN, "objective=bd3", "objective.block_size=8",
        "objective.clip_search=[[0,1],[0.3,0.8]]", f"run_dir={run_dir}",
    ]  # fmt: skip
    return train(compose_config("train", overrides=overrides))


@pytest.mark.slow
def test_bd3_trains_validates_and_chooses_a_clip(bd3_run: dict) -> None:
    metrics = bd3_run["metrics"]
    assert 1.0 < metrics["val/ppl"] < 10 * 512
    assert (bd3_run["run_dir"] / "denoising.gif").stat().st_size > 0  # the visualisation too
    with (bd3_run["run_dir"] / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    chosen = [r for r in rows if r.get("val/clip_t_min")]
    assert chosen and {"val/loss_var/t0-1", "val/loss_var/t0.3-0.8"} <= set(chosen[-1])
    model = DiffusionLM.load_from_checkpoint(bd3_run["run_dir"] / "checkpoints" / "last.ckpt")
    assert isinstance(model.objective, BlockDiffusion) and model.objective.block_size == 8
    logged = (float(chosen[-1]["val/clip_t_min"]), float(chosen[-1]["val/clip_t_max"]))
    assert model.objective.clip == pytest.approx(logged)


@pytest.mark.slow
def test_bd3_checkpoint_generates_past_its_context_and_scores(bd3_run: dict) -> None:
    model = DiffusionLM.load_from_checkpoint(bd3_run["run_dir"] / "checkpoints" / "last.ckpt")
    assert model.context_length == 32
    long = model.generate_with_info("the", 48, sampler="greedy", steps=8, forbid_eos=True)
    assert long.tokens.shape == (1, 48) and long.texts[0]  # past the 32-token context
    again = model.generate("the", 48, sampler="greedy", steps=8, forbid_eos=True)
    assert again == long.texts[0]
    values, errors = model.log_likelihood(
        ["the", "a"], ["list of", "value"], mc_samples=8, return_stderr=True
    )
    assert values.shape == (2,) and bool((values < 0).all()) and bool((errors >= 0).all())
    with pytest.raises(ValueError, match="more than the model context"):
        model.generate("word " * 40, n_tokens=8)


@pytest.mark.slow
def test_bd3_generate_and_eval_clis(bd3_run: dict, tmp_path: Path) -> None:
    ckpt = bd3_run["run_dir"] / "checkpoints" / "last.ckpt"
    common = [f"ckpt={ckpt}", "sampler=greedy", "n_tokens=40", "sampler.steps=4", SCRATCH_RUN_DIR]
    one, two = (run_cli("llada.generate", *common, "prompt=the") for _ in range(2))
    assert one.stdout.strip() and one.stdout == two.stdout
    gif, html = tmp_path / "d.gif", tmp_path / "d.html"
    run_cli("llada.generate", *common, "prompt=the", "visualize=true", f"viz.gif={gif}",
            f"viz.html={html}")  # fmt: skip
    assert gif.stat().st_size > 0 and "step" in html.read_text().lower()
    run_cli(
        "llada.eval", f"ckpt={ckpt}", "val_batches=2", "num_samples=2", "batch_size=2",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["lm"] == "block_diffusion"
    assert result["metrics"]["val/ppl"] == pytest.approx(bd3_run["metrics"]["val/ppl"], rel=1e-5)
