"""Causal LMs as diffusion backbones (model=hf_causal) and AR starts (model.init_from)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from conftest import TINY_RUN, compose_config, run_cli
from llada.data.tokenizer import train_tokenizer
from llada.diffusion.block_decoding import training_pattern
from llada.diffusion.block_diffusion import BlockDiffusion
from llada.models.hf_causal import HFCausalLM, causal_lm
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM
from llada.train import train

VOCAB = 64
FAMILIES = {
    "gpt2": lambda: GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    ),
    "llama": lambda: LlamaForCausalLM(
        LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    ),
    "qwen2": lambda: Qwen2ForCausalLM(
        Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(FAMILIES))
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random causal LM of one family, written with save_pretrained (as a hub download)."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp(request.param)
    FAMILIES[request.param]().save_pretrained(directory)
    return directory


def backbone(directory: Path, token_shift: bool = True) -> HFCausalLM:
    return causal_lm(VOCAB, str(directory), token_shift=token_shift).eval()


def test_attention_is_bidirectional_for_mdm_and_block_causal_for_bd3(saved: Path) -> None:
    net = backbone(saved, token_shift=False)
    ids = torch.randint(0, VOCAB, (1, 12))
    changed = ids.clone()
    changed[0, 10] = (ids[0, 10] + 1) % VOCAB
    with torch.no_grad():
        before, after = net(ids), net(changed)
    assert not torch.allclose(before[0, 2], after[0, 2])  # a later token changes an earlier one
    # bd3 (blocks of 4) over [x_t ; x_0]: a clean token of block 1 (position 6) is seen by the
    # noisy block after it and by its own and later clean blocks, by nothing else.
    in_block_one = ids.clone()
    in_block_one[0, 6] = (ids[0, 6] + 1) % VOCAB
    pattern, positions = training_pattern(12, 4), torch.arange(12).repeat(2)
    with torch.no_grad():
        base = net(torch.cat([ids, ids], 1), attention=pattern, positions=positions)
        moved = net(torch.cat([ids, in_block_one], 1), attention=pattern, positions=positions)
    difference = (base - moved).abs().amax(dim=-1)[0]  # (2L,)
    assert float(difference[:8].max()) == 0.0  # noisy blocks 0 and 1
    assert float(difference[8:12].min()) > 0.0  # noisy block 2
    assert float(difference[12:16].max()) == 0.0  # clean block 0
    assert float(difference[16:24].min()) > 0.0  # clean blocks 1 and 2


def test_token_shift_reads_the_previous_output_exactly(saved: Path) -> None:
    """With a causal pattern, the shifted adapter gives the AR model's own logits one position
    later: an off-by-one in the shift would fail."""
    raw = AutoModelForCausalLM.from_pretrained(saved).eval()
    net = backbone(saved, token_shift=True)
    ids = torch.randint(0, VOCAB, (2, 10))
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    with torch.no_grad():
        expected = raw(ids).logits  # (B, L, V)
        shifted = net(ids, attention=causal)
    torch.testing.assert_close(shifted[:, 1:], expected[:, :-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(shifted[:, 0], expected[:, 0], atol=1e-5, rtol=0)


def test_results_do_not_depend_on_batch_padding(saved: Path) -> None:
    net = backbone(saved)
    short, long = torch.randint(0, VOCAB, (1, 5)), torch.randint(0, VOCAB, (1, 9))
    batch = torch.zeros(2, 9, dtype=torch.long)
    attention = torch.zeros_like(batch)
    batch[0, 4:], attention[0, 4:] = short, 1  # left padded
    batch[1], attention[1] = long, 1
    with torch.no_grad():
        alone = net(short)
        together = net(batch, attention)
    torch.testing.assert_close(together[0, 4:], alone[0], atol=1e-5, rtol=0)


def test_new_embedding_rows_start_at_the_mean(saved: Path) -> None:
    net = backbone(saved)
    old = net.model.get_input_embeddings().weight.detach().clone()
    net.fit_vocab(VOCAB + 1)  # e.g. the added [MASK]
    grown = net.model.get_input_embeddings().weight
    assert grown.shape[0] == VOCAB + 1
    torch.testing.assert_close(grown[VOCAB], old.mean(dim=0))


@pytest.fixture(scope="module")
def adapted(saved: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionLM:
    """A DiffusionLM over the saved family, with a tokenizer of the same size."""
    texts = ["the cat sat on the mat", "a dog lay on the rug", "the owl flew over the log"]
    tokenizer = train_tokenizer(texts * 20, VOCAB, "wordpiece", tmp_path_factory.mktemp("tok"))
    net = causal_lm(len(tokenizer), str(saved))
    net.fit_vocab(len(tokenizer))
    return DiffusionLM(net, tokenizer)


@pytest.mark.parametrize("objective", ["mdm", "bd3"])
def test_training_steps_lower_the_loss(adapted: DiffusionLM, objective: str) -> None:
    torch.manual_seed(0)
    if objective == "bd3":
        adapted.objective = BlockDiffusion(block_size=4, mask_id=adapted.mask_id)
    batch = {"input_ids": torch.randint(5, len(adapted.tokenizer), (8, 16))}
    optimizer = torch.optim.AdamW(adapted.backbone.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same masks every time: the change is the model's
        return adapted.objective.training_loss(adapted.backbone, batch).loss

    first = float(loss())
    for _ in range(20):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert float(loss()) < 0.8 * first


@pytest.mark.parametrize("objective", [None, partial(BlockDiffusion, block_size=4)])
def test_generation_and_likelihood_run(saved: Path, adapted: DiffusionLM, objective) -> None:
    lm = DiffusionLM(adapted.backbone, adapted.tokenizer, objective=objective).eval()
    out = lm.generate_with_info(["the cat", "a"], 8, sampler="greedy", steps=8)
    assert out.tokens.shape == (2, 8) and not bool((out.tokens == lm.mask_id).any())
    values = lm.log_likelihood(["the cat", "a dog"], ["sat on", "lay"], mc_samples=4)
    assert values.shape == (2,) and bool(torch.isfinite(values).all())


def test_a_masked_lm_is_refused_in_one_line(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2,
                                           hidden_dim=32)).save_pretrained(tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="is a DistilBertForMaskedLM, not a causal LM") as info:
        causal_lm(VOCAB, str(tmp_path))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ model.init_from (native)
@pytest.fixture(scope="module")
def ar_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ar")
    train(compose_config("train", [*TINY_RUN, "model=ar_tiny", f"run_dir={run_dir}"]))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_init_from_an_ar_checkpoint_starts_from_its_weights(ar_ckpt: Path, tmp_path: Path) -> None:
    ar = DiffusionLM.load_from_checkpoint(ar_ckpt)
    overrides = [*TINY_RUN, f"model.init_from={ar_ckpt}", "model.token_shift=true",
                 "trainer.max_steps=1", f"run_dir={tmp_path}"]  # fmt: skip
    cfg = compose_config("train", overrides)
    from llada.train import build_model

    model = build_model(cfg, ar.tokenizer)
    assert isinstance(model.backbone, NativeTransformer) and not model.backbone.causal
    for name, value in ar.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], value), name
    # With the causal pattern and the shift, the adapted model is the AR model exactly.
    ids = torch.randint(0, len(ar.tokenizer), (2, 12))
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    with torch.no_grad():
        torch.testing.assert_close(
            model.backbone(ids, attention=causal)[:, 1:], ar(ids)[:, :-1], atol=1e-5, rtol=0
        )
    result = train(cfg)  # and it trains (the AR run's tokenizer is taken)
    assert result["metrics"]["val/ppl"] > 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.dim=64"], r"does not fit the model \(shape"),
        (["model=ar_tiny"], "this objective takes an autoregressive one"),
    ],
    ids=["shapes", "diffusion-checkpoint-for-ar"],
)
def test_bad_init_from_fails_in_one_line(
    ar_ckpt: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    """(An MDM may start from an MDM checkpoint: fine-tuning; the AR objective may not.)"""
    source = ar_ckpt
    if "model=ar_tiny" in overrides:  # a diffusion checkpoint as the AR's start
        mdm_dir = tmp_path / "mdm"
        train(compose_config("train", [*TINY_RUN, "trainer.max_steps=1", f"run_dir={mdm_dir}"]))
        source = mdm_dir / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        "train", [*TINY_RUN, f"model.init_from={source}", *overrides, f"run_dir={tmp_path / 'x'}"]
    )
    with pytest.raises(ValueError, match=message) as info:
        train(cfg)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ train, export, reload
@pytest.mark.slow
def test_an_adapted_gpt2_trains_exports_and_reloads(tmp_path: Path) -> None:
    """model=hf_causal through the real entries: a local GPT-2 directory (weights + tokenizer,
    as a hub download), a bd3 run on it, export, and AutoModelForCausalLM reloads the weights."""
    texts = ["the cat sat on the mat", "a dog lay on the rug", "the owl flew over the log"]
    source = tmp_path / "gpt2"
    tokenizer = train_tokenizer(texts * 20, VOCAB, "wordpiece", tmp_path / "tok")
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    ).save_pretrained(source)
    tokenizer.save_pretrained(source)
    run_dir = tmp_path / "run"
    tiny_run = [option for option in TINY_RUN if not option.startswith("model.")]
    overrides = [*tiny_run, "model=hf_causal", f"model.name_or_path={source}", "objective=bd3",
                 "objective.block_size=8", f"run_dir={run_dir}"]  # fmt: skip
    result = train(compose_config("train", overrides))
    assert result["metrics"]["val/ppl"] > 1.0
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    model = DiffusionLM.load_from_checkpoint(ckpt)
    assert isinstance(model.backbone, HFCausalLM) and model.backbone.token_shift
    text = model.generate("the cat", 12, sampler="greedy", steps=4)
    assert isinstance(text, str)
    out = tmp_path / "export"
    run_cli("llada.export", f"ckpt={ckpt}", f"out={out}")
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    for name, value in model.backbone.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name
    assert "model=hf_causal" in (out / "README.md").read_text()


# ------------------------------------------------------------------ attention-mask annealing
class PatternSpy(torch.nn.Module):
    """A native backbone that keeps the attention pattern of its last call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = NativeTransformer(VOCAB, dim=16, n_layers=1, n_heads=2, max_len=32)
        self.causal, self.max_len = False, 32
        self.supports_output_mask = self.supports_attention_pattern = True
        self.pattern = None

    def forward(self, ids, attention_mask=None, **options):
        self.pattern = options.get("attention")
        return self.net(ids, attention_mask, **options)


@pytest.mark.parametrize("objective", ["mdm", "bd3"])
def test_attention_anneals_from_causal_to_the_target(objective: str) -> None:
    from llada.diffusion.mdm import MaskedDiffusion

    spy = PatternSpy()
    if objective == "mdm":
        built = MaskedDiffusion(mask_id=VOCAB - 1, causal_anneal_steps=100, random_length_prob=0)
        target = torch.ones(16, 16, dtype=torch.bool)
        positions = torch.arange(16)
    else:
        built = BlockDiffusion(block_size=4, mask_id=VOCAB - 1, causal_anneal_steps=100)
        target = training_pattern(16, 4)
        positions = torch.arange(16).repeat(2)
    built.check_backbone(spy)
    batch = {"input_ids": torch.randint(0, VOCAB - 1, (2, 16))}
    later = positions[None, :] > positions[:, None]  # entries to a later position
    torch.manual_seed(0)
    built.at_step(0)
    built.training_loss(spy, batch)
    assert torch.equal(spy.pattern, target & ~later)  # causal at the start
    built.at_step(50)
    built.training_loss(spy, batch)
    opened = (spy.pattern & later).sum() / (target & later).sum()
    assert 0.35 < float(opened) < 0.65 and torch.equal(spy.pattern & ~later, target & ~later)
    built.at_step(100)
    built.training_loss(spy, batch)
    if objective == "mdm":
        assert spy.pattern is None  # annealing over: plain bidirectional calls
    else:
        assert torch.equal(spy.pattern, target)


def test_annealing_needs_a_backbone_that_takes_patterns() -> None:
    from llada.diffusion.mdm import MaskedDiffusion
    from llada.models.hf import distilbert

    masked_lm = distilbert(vocab_size=20, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    with pytest.raises(ValueError, match="causal_anneal_steps=10 needs a backbone") as info:
        MaskedDiffusion(mask_id=19, causal_anneal_steps=10).check_backbone(masked_lm)
    assert "\n" not in str(info.value)
