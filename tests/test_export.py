"""Hugging Face export: checkpoint -> `python -m llada.export` -> transformers loads the same model.

Also: the HF wrapper of the native backbone on its own, LLaDA-8B's config (counted, and built on
the meta device only), and training that starts from an export or from any local `save_pretrained`
directory (model=hf).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from conftest import TINY_RUN, compose_config, run_cli
from llada import DiffusionLM
from llada.export import export
from llada.hub import load_tokenizer
from llada.models.hf_native import (
    LladaNativeForCausalLM,
    LladaNativeForMaskedLM,
    LladaNativePreTrainedModel,
    native_parameter_count,
)
from llada.models.native import NativeTransformer
from llada.train import build_model, train

TEXT = "The return statement leaves a function; __init__ runs first."
# A small fixed vocabulary for a BERT-style tokenizer (lowercase words of the default corpus).
WORDS = """the a an of to in is and or for with as by on be it that this if not are from at
return statement function class object value list type name module def import none true false
raise error exception call method attribute string number key dict set tuple loop while else
try except finally yield lambda global local variable argument default keyword expression"""
# TINY_RUN without the native backbone's size keys (model=hf takes its shape from the directory).
HF_TINY_RUN = [o for o in TINY_RUN if not o.startswith("model.")]


def compose_cfg(config: str, overrides: list[str]) -> DictConfig:
    return compose_config(config, overrides=overrides)


def probe(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed ids (2, 12) and a mask whose first row is left-padded (the masked attention path)."""
    ids = torch.randint(0, vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    return ids, mask


def backbone_logits(ckpt: Path, **kwargs) -> torch.Tensor:
    """The checkpoint's backbone on `probe(vocab)`: (2, 12, V)."""
    model = DiffusionLM.load_from_checkpoint(ckpt, **kwargs)
    vocab_size = model.backbone(torch.zeros(1, 1, dtype=torch.long)).shape[-1]
    with torch.no_grad():
        return model.backbone(*probe(vocab_size))


def tiny_native(**kwargs) -> NativeTransformer:
    torch.manual_seed(0)
    return NativeTransformer(vocab_size=50, dim=32, n_layers=2, n_heads=4, max_len=16, **kwargs)


# ------------------------------------------------------------------ fast: no training, no CLI
def test_llada_8b_config_has_8b_parameters() -> None:
    """Counted from the config, then built on the meta device (no memory) to check the count."""
    cfg = compose_cfg("train", ["model=llada_8b"])
    hparams = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k[0] != "_"}
    expected = {"dim": 4096, "n_layers": 32, "n_heads": 32, "mlp_hidden": 12288, "max_len": 4096}
    assert expected.items() <= hparams.items()
    assert hparams["vocab_size"] == 126464 and hparams["tie_embeddings"] is False
    count = native_parameter_count(**hparams)
    assert 8.00e9 < count < 8.03e9  # LLaDA-8B: 8.02B
    with torch.device("meta"):
        backbone = instantiate(cfg.model)()
        logits = backbone(torch.zeros(1, 8, dtype=torch.long))
    assert sum(p.numel() for p in backbone.parameters()) == count
    assert logits.shape == (1, 8, 126464)


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_count_matches_built_models(tie: bool) -> None:
    model = tiny_native(tie_embeddings=tie, mlp_hidden=None)
    assert sum(p.numel() for p in model.parameters()) == native_parameter_count(**model.hparams)


@pytest.mark.parametrize(("causal", "tie"), [(False, True), (True, False)])
def test_hf_wrapper_round_trip(tmp_path: Path, causal: bool, tie: bool) -> None:
    """save_pretrained -> Auto*.from_pretrained: same keys (prefix model.), same logits, loss."""
    native = tiny_native(causal=causal, tie_embeddings=tie).eval()
    wrapped = LladaNativePreTrainedModel.from_native(native, mask_token_id=2)
    assert wrapped.model is native  # wrapped, not copied
    wrapped.save_pretrained(tmp_path)
    auto = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is (LladaNativeForCausalLM if causal else LladaNativeForMaskedLM)
    assert set(loaded.state_dict()) == {f"model.{k}" for k in native.state_dict()}
    assert (loaded.model.lm_head.weight is loaded.model.embed.weight) is tie
    ids, mask = probe(50)
    with torch.no_grad():
        out = loaded(ids, attention_mask=mask, labels=ids)
        assert torch.equal(out.logits, native(ids, mask))
    logits = out.logits.flatten(0, 1) if not causal else out.logits[:, :-1].flatten(0, 1)
    targets = ids.flatten() if not causal else ids[:, 1:].flatten()
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits, targets))
    with pytest.raises(ValueError, match="AutoModelForCausalLM" if causal else "AutoModelForMask"):
        (AutoModelForMaskedLM if causal else AutoModelForCausalLM).from_pretrained(tmp_path)


def test_causal_lm_generate_is_greedy_decoding_of_the_backbone() -> None:
    """HF `generate()` on the AR wrapper (no KV cache) = argmax one token at a time."""
    native = tiny_native(causal=True).eval()
    model = LladaNativePreTrainedModel.from_native(native, bos_token_id=3, pad_token_id=0)
    prompt = torch.randint(4, 50, (1, 5), generator=torch.Generator().manual_seed(1))
    out = model.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None)
    expected = prompt
    with torch.no_grad():
        for _ in range(6):
            next_id = native(expected)[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            expected = torch.cat([expected, next_id], dim=1)
    assert torch.equal(out, expected)


def test_random_init_from_config_is_the_native_one() -> None:
    """model=hf pretrained=false on an export: a fresh network initialised like NativeTransformer."""
    config = LladaNativePreTrainedModel.from_native(tiny_native()).config
    fresh = AutoModelForMaskedLM.from_config(config).model
    reference = tiny_native()
    for name, param in reference.named_parameters():
        actual = fresh.get_parameter(name)
        if param.dim() == 1:  # RMSNorm gains
            assert torch.equal(actual, torch.ones_like(actual)), name
        else:  # Normal(0, 0.02), residual projections scaled down: the std tells them apart
            assert abs(actual.std().item() / param.std().item() - 1) < 0.2, name
    torch.testing.assert_close(fresh.blocks[0].attn.rope.cos, reference.blocks[0].attn.rope.cos)


# ------------------------------------------------------------ slow: real runs, the real CLI
@pytest.fixture(scope="module")
def native_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny diffusion run with an EMA (export takes the averaged weights by default)."""
    run_dir = tmp_path_factory.mktemp("native-run")
    overrides = [*TINY_RUN, "callbacks=ema", "trainer.max_steps=3", f"run_dir={run_dir}"]
    train(compose_cfg("train", overrides))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def exported(native_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "tiny-mdm"
    proc = run_cli("llada.export", f"ckpt={native_ckpt}", f"out={out}", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_export_cli_gives_the_checkpoint_model_and_tokenizer(
    native_ckpt: Path, exported: Path
) -> None:
    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert not any(name.endswith(".bin") for name in files)
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]  # no temp folder left
    assert "trust_remote_code=True" in (exported / "README.md").read_text()

    model = AutoModelForMaskedLM.from_pretrained(exported).eval()
    assert isinstance(model, LladaNativeForMaskedLM)
    with torch.no_grad():
        logits = model(*probe(model.config.vocab_size)).logits
    assert torch.equal(logits, backbone_logits(native_ckpt))  # the EMA weights
    assert not torch.allclose(logits, backbone_logits(native_ckpt, use_ema=False))

    original = DiffusionLM.load_from_checkpoint(native_ckpt).tokenizer
    tokenizer = AutoTokenizer.from_pretrained(exported)
    ids = original.encode(TEXT)
    assert tokenizer.encode(TEXT) == ids
    assert tokenizer.decode(ids) == original.decode(ids)
    assert tokenizer.mask_token_id == model.config.mask_token_id == original.mask_token_id


@pytest.mark.slow
def test_export_loads_with_remote_code_where_llada_is_not_importable(
    native_ckpt: Path, exported: Path, tmp_path: Path
) -> None:
    """A fresh process that cannot import llada loads the export through `trust_remote_code`."""
    ids, mask = probe(len(DiffusionLM.load_from_checkpoint(native_ckpt).tokenizer))
    torch.save({"ids": ids, "mask": mask}, tmp_path / "probe.pt")
    script = f"""
import sys
sys.modules["llada"] = None  # `import llada` now fails: the export must bring its own code
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer
model = AutoModelForMaskedLM.from_pretrained({str(exported)!r}, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained({str(exported)!r})
probe = torch.load({str(tmp_path / "probe.pt")!r})
with torch.no_grad():
    logits = model(probe["ids"], attention_mask=probe["mask"]).logits
torch.save({{"logits": logits, "module": type(model).__module__,
            "ids": tokenizer.encode({TEXT!r})}}, {str(tmp_path / "out.pt")!r})
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt")
    assert result["module"].startswith("transformers_modules.")  # the copied code, not llada's
    torch.testing.assert_close(result["logits"], backbone_logits(native_ckpt), rtol=0, atol=1e-6)
    original = DiffusionLM.load_from_checkpoint(native_ckpt).tokenizer
    assert result["ids"] == original.encode(TEXT)


@pytest.mark.slow
def test_export_refuses_a_non_empty_out_and_replaces_only_exports(
    native_ckpt: Path, exported: Path, tmp_path: Path
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_cli("llada.export", f"ckpt={native_ckpt}", f"out={out}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "overwrite=true" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # nothing written beside it either
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"

    # overwrite=true replaces an earlier export, never a directory that is not one.
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export(compose_cfg("export", [f"ckpt={native_ckpt}", f"out={out}", "overwrite=true"]))
    earlier = tmp_path / "earlier"
    export(compose_cfg("export", [f"ckpt={native_ckpt}", f"out={earlier}", "use_ema=false"]))
    (earlier / "stale.txt").write_text("from the earlier export")
    export(compose_cfg("export", [f"ckpt={native_ckpt}", f"out={earlier}", "overwrite=true"]))
    assert not (earlier / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "taken"]
    model = AutoModelForMaskedLM.from_pretrained(earlier).eval()
    with torch.no_grad():
        assert torch.equal(
            model(*probe(model.config.vocab_size)).logits, backbone_logits(native_ckpt)
        )


@pytest.mark.slow
def test_causal_backbone_exports_to_causal_lm(tmp_path: Path) -> None:
    """The autoregressive baseline (causal=true) becomes an AutoModelForCausalLM."""
    overrides = [
        *TINY_RUN,
        "model=ar_tiny",
        "trainer.max_steps=2",
        f"run_dir={tmp_path / 'run'}",
    ]
    train(compose_cfg("train", overrides))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = export(compose_cfg("export", [f"ckpt={ckpt}", f"out={tmp_path / 'ar'}"]))
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert isinstance(model, LladaNativeForCausalLM) and model.config.causal
    with torch.no_grad():
        assert torch.equal(model(*probe(model.config.vocab_size)).logits, backbone_logits(ckpt))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.bos_token_id == tokenizer.eos_token_id  # the AR baseline's start token
    auto_map = json.loads((out / "config.json").read_text())["auto_map"]
    assert "AutoModelForCausalLM" in auto_map and "AutoModelForMaskedLM" not in auto_map
    with pytest.raises(ValueError, match="AutoModelForCausalLM"):
        AutoModelForMaskedLM.from_pretrained(out)


@pytest.mark.slow
def test_training_starts_from_an_export(native_ckpt: Path, exported: Path, tmp_path: Path) -> None:
    """model=hf model.name_or_path=<export>: the exported weights and tokenizer, then training."""
    overrides = [*HF_TINY_RUN, "model=hf", f"model.name_or_path={exported}"]
    cfg = compose_cfg("train", [*overrides, f"run_dir={tmp_path / 'unused'}"])
    tokenizer = instantiate(cfg.data).prepare_tokenizer(load_tokenizer(str(exported)))
    start = build_model(cfg, tokenizer).eval()
    with torch.no_grad():
        assert torch.equal(start(*probe(len(tokenizer))), backbone_logits(native_ckpt))

    # model.trust_remote_code=true through the real entry. llada registered its classes in that
    # process and transformers 5 prefers registered classes to an export's copy of the same code
    # (the copy alone is tested above, in a process without llada).
    run_dir = tmp_path / "run"
    proc = run_cli(
        "llada.train", *overrides, "model.trust_remote_code=true", "trainer.max_steps=2",
        f"hydra.run.dir={run_dir}", env={"HF_MODULES_CACHE": str(tmp_path / "modules")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = DiffusionLM.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert trained.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert type(trained.backbone.model).__name__ == "LladaNativeForMaskedLM"
    after = backbone_logits(run_dir / "checkpoints" / "last.ckpt")
    assert not torch.allclose(after, backbone_logits(native_ckpt))  # it trained


@pytest.mark.slow
def test_distilbert_from_a_local_directory_trains_with_model_hf_and_exports(
    tmp_path: Path,
) -> None:
    """A random DistilBERT saved with save_pretrained: model=hf trains it; export saves it as is."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import DistilBertConfig, DistilBertForMaskedLM, PreTrainedTokenizerFast

    words = sorted(set(WORDS.split()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *".,:;()[]=_"]
    # A BERT-style WordPiece built directly: transformers 5's BertTokenizerFast ignores vocab_file=.
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    assert tokenizer.unk_token_id not in tokenizer.encode(WORDS)
    local = tmp_path / "distilbert"
    tokenizer.save_pretrained(local)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertForMaskedLM(config).save_pretrained(local)

    overrides = [*HF_TINY_RUN, "model=hf", f"model.name_or_path={local}", "trainer.max_steps=2"]
    train(compose_cfg("train", [*overrides, f"run_dir={tmp_path / 'run'}"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert DiffusionLM.load_from_checkpoint(ckpt).backbone.model.config.dim == 32

    out = export(compose_cfg("export", [f"ckpt={ckpt}", f"out={tmp_path / 'export'}"]))
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert isinstance(model, DistilBertForMaskedLM)
    assert "auto_map" not in json.loads((out / "config.json").read_text())  # its own code
    with torch.no_grad():
        assert torch.equal(model(*probe(model.config.vocab_size)).logits, backbone_logits(ckpt))
    original = DiffusionLM.load_from_checkpoint(ckpt).tokenizer
    assert original.get_vocab() == tokenizer.get_vocab()  # the directory's tokenizer was used
    assert AutoTokenizer.from_pretrained(out).encode(TEXT) == original.encode(TEXT)
