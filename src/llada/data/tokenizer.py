"""Train, cache and serialise the tokenizer that the diffusion model reads and writes.

Masked diffusion needs a ``[MASK]`` token and an end-of-document token; a tokenizer trained here
always has both. Tokenizers travel inside checkpoints as plain strings (see
:func:`tokenizer_to_state`) so ``torch.load(weights_only=True)`` can restore them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from llada.atomic import atomic_write

__all__ = [
    "EOS",
    "MASK",
    "PAD",
    "SPECIAL_TOKENS",
    "TOKENIZER_BUILDERS",
    "UNK",
    "ensure_mask_token",
    "eos_id",
    "text_digest",
    "tokenizer_from_state",
    "tokenizer_to_state",
    "train_tokenizer",
]

PAD = "[PAD]"
UNK = "[UNK]"
MASK = "[MASK]"
EOS = "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, MASK, EOS)

# Bump when the builders change, so stale cached tokenizers are not reused.
CACHE_VERSION = "llada-tokenizer-v3"

# Settings besides the special tokens that change how a tokenizer encodes or decodes.
_CONFIG_KEYS = (
    "clean_up_tokenization_spaces",
    "model_max_length",
    "padding_side",
    "truncation_side",
)

# A builder trains a backend tokenizer of one kind on texts, to a target vocabulary size.
TokenizerBuilder = Callable[[list[str], int], Tokenizer]


def _continuation_chars(backend: Tokenizer, texts: list[str]) -> list[str]:
    """Characters that occur inside words (not first), after normalising and pre-tokenising."""
    chars: set[str] = set()
    for text in texts:
        normalised = backend.normalizer.normalize_str(text)
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalised):
            chars.update(word[1:])
    return sorted(chars)


def _wordpiece(texts: list[str], vocab_size: int) -> Tokenizer:
    """Cased WordPiece: readable decode() ("a ##b" merged, no space before punctuation).

    tokenizers' WordPieceTrainer is not deterministic (huggingface/tokenizers#1794): it creates the
    "##c" tokens in hash-map order and their ids break ties between merges. Registering every
    "##c" up front, in sorted order, makes training reproducible; they are then turned back into
    ordinary vocabulary entries (not special tokens, which decode() would skip).
    """
    backend = Tokenizer(models.WordPiece(unk_token=UNK))
    backend.normalizer = normalizers.NFKC()
    # Like BERT's (split on spaces, each punctuation mark alone) except that "_" is a word
    # character: code names such as __init__ stay one word instead of five tokens.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), behavior="isolated"),
        ]
    )
    backend.decoder = decoders.WordPiece()
    pinned = [f"##{char}" for char in _continuation_chars(backend, texts)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pinned], show_progress=False
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))

    vocab = backend.get_vocab(with_added_tokens=False)
    trained = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
    trained.normalizer = backend.normalizer
    trained.pre_tokenizer = backend.pre_tokenizer
    trained.decoder = backend.decoder
    trained.add_special_tokens(list(SPECIAL_TOKENS))
    return trained


def _byte_level_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE: lossless (keeps whitespace and newlines), never emits [UNK]."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return backend


TOKENIZER_BUILDERS: dict[str, TokenizerBuilder] = {
    "wordpiece": _wordpiece,
    "bpe": _byte_level_bpe,
}


def text_digest(texts: Iterable[str]) -> str:
    """sha256 of a sequence of texts; length-prefixed so ["ab", "c"] != ["a", "bc"]."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained backend so transformers sees our special tokens (mask/pad/eos/unk ids)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        eos_token=EOS,
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(
    texts: list[str],
    vocab_size: int = 4096,
    kind: str = "wordpiece",
    cache_dir: str | Path | None = None,
) -> PreTrainedTokenizerFast:
    """Train a ``kind`` tokenizer (see ``TOKENIZER_BUILDERS``) on ``texts``; cached if asked.

    The cache file ``cache_dir/tokenizer-<key16>.json`` is keyed by the texts, vocab size, kind and
    ``CACHE_VERSION``, so a second run (or a second process) loads instead of retraining. Training
    itself is deterministic too, so a cleared cache gives back the same tokenizer.
    """
    if kind not in TOKENIZER_BUILDERS:
        known = ", ".join(sorted(TOKENIZER_BUILDERS))
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of: {known}")
    cache_file = None
    if cache_dir is not None:
        key = text_digest([text_digest(texts), str(vocab_size), kind, CACHE_VERSION])
        cache_file = Path(cache_dir).expanduser() / f"tokenizer-{key[:16]}.json"
        if cache_file.is_file():
            return _wrap(Tokenizer.from_file(str(cache_file)))
    backend = TOKENIZER_BUILDERS[kind](texts, vocab_size)
    if cache_file is not None:
        with atomic_write(cache_file, "w") as handle:
            handle.write(backend.to_str())
    return _wrap(backend)


def tokenizer_to_state(tok: PreTrainedTokenizerFast) -> dict[str, str]:
    """Serialise any fast tokenizer to plain strings (safe for ``torch.load(weights_only=True)``).

    The backend JSON holds vocab, normaliser, pre-tokeniser, decoder and added tokens; the
    special-token map and decode settings live on the transformers wrapper, so they go alongside.
    """
    config = {key: getattr(tok, key) for key in _CONFIG_KEYS if hasattr(tok, key)}
    # transformers 5 keeps unnamed special tokens outside special_tokens_map (4.x keeps them in).
    extra = getattr(tok, "extra_special_tokens", None)
    if isinstance(extra, list) and extra:
        config["extra_special_tokens"] = [str(token) for token in extra]
    return {
        "tokenizer_json": tok.backend_tokenizer.to_str(),
        "special_tokens": json.dumps(tok.special_tokens_map),
        "config": json.dumps(config),
    }


def tokenizer_from_state(state: dict[str, str]) -> PreTrainedTokenizerFast:
    """Inverse of :func:`tokenizer_to_state`: same ids from encode, same text from decode."""
    backend = Tokenizer.from_str(state["tokenizer_json"])
    special_tokens = json.loads(state["special_tokens"])
    config = json.loads(state.get("config", "{}"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_tokens, **config)


def ensure_mask_token(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Give ``tok`` a mask token (in place) if it has none, e.g. a GPT-style pretrained one.

    Adding a token grows ``len(tok)``: size the model's embedding from ``len(tok)``, not
    ``tok.vocab_size``.
    """
    if tok.mask_token is None:
        tok.add_special_tokens({"mask_token": MASK})
    return tok


def eos_id(tok: PreTrainedTokenizerFast, required: bool = True) -> int | None:
    """The id that ends a document: ``eos_token_id``, else BERT's ``sep_token_id``.

    Without either: a one-line error, or None when not `required`.
    """
    for candidate in (tok.eos_token_id, tok.sep_token_id):
        if candidate is not None:
            return int(candidate)
    if not required:
        return None
    raise ValueError(f"tokenizer {type(tok).__name__} has neither an eos_token nor a sep_token")
