"""lm-evaluation-harness adapter: our checkpoints as the lm_eval model `llada`.

    python -m llada.lm_eval_adapter --model llada --model_args ckpt=PATH,mc_samples=128 \\
        --tasks hellaswag [any other lm_eval option]

lm_eval 0.4 looks models up in a registry that only holds what has been imported; it has no
plugin entry point for models (checked in 0.4.13: its registry reads `lm_eval.models` only), so
a bare `lm_eval --model llada` cannot find us. `python -m llada.lm_eval_adapter` registers the
model and then runs lm_eval's own CLI with the same arguments. In Python, importing this module
registers it: `import llada.lm_eval_adapter; lm_eval.simple_evaluate(model="llada", ...)`.

- `loglikelihood`: diffusion checkpoints give the LLaDA eq. 6 Monte-Carlo lower bound
  (`mc_samples` draws, the same seed for every request: the choices of one question share their
  masks, so their comparison has less noise than their values); AR checkpoints the exact value.
  `is_greedy` (`greedy_check`): `one_pass` (default) asks whether one forward pass over the fully
  masked answer predicts every answer token as its argmax (parallel greedy decoding in one step);
  `decode` runs our greedy sampler with one token per step (low-confidence order) and compares;
  `none` reports False without a forward pass. For AR checkpoints both are the exact check.
- `loglikelihood_rolling`: windows of the context length, conditioned on EOS (the documents'
  separator in training); for diffusion the sum of per-window bounds, itself a lower bound.
- `generate_until`: our sampler (`max_gen_toks` tokens, `steps` = that many unless given;
  greedy unless the task asks `do_sample`), the text cut at the first `until` string.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

try:
    # Built-in models first: lm_eval fills its registry lazily only while it is empty, so
    # registering ours alone would hide `--model hf` and the rest.
    import lm_eval.models  # noqa: F401
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "llada.lm_eval_adapter needs lm-evaluation-harness: pip install 'llada[eval]' "
        "(or pip install 'lm_eval>=0.4')"
    ) from error

from llada.cli import default_device
from llada.diffusion.objective import GREEDY_CHECKS
from llada.errors import fail_cleanly
from llada.module import DiffusionLM

Ids = list[int]


@register_model("llada")
class LladaLM(LM):
    """A llada checkpoint (diffusion or AR) behind lm_eval's three request types."""

    def __init__(
        self,
        ckpt: str,
        mc_samples: int = 128,
        mc_batch_size: int = 32,
        greedy_check: str = "one_pass",
        seed: int = 0,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        batch_size: int | str | None = 1,
        max_batch_size: int | None = None,  # passed by lm_eval; unused (no auto batching)
        device: str | None = None,
        **generation: Any,
    ) -> None:
        super().__init__()
        if greedy_check not in GREEDY_CHECKS:
            raise ValueError(f"greedy_check={greedy_check!r}; allowed: {', '.join(GREEDY_CHECKS)}")
        device = pick_device(device)
        self.model = DiffusionLM.load_from_checkpoint(ckpt, map_location=device)
        self.ckpt, self._device = str(ckpt), torch.device(device)
        self.tokenizer = self.model.tokenizer
        self.seed, self.max_gen_toks = int(seed), int(max_gen_toks)
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16  # "auto" -> 16
        self.generation = generation  # e.g. steps, block_length, remasking, cfg_scale
        self.model.settings(**generation)  # unknown or bad settings fail now, not mid-run
        self.scoring = {
            "mc_samples": int(mc_samples), "batch_size": int(mc_batch_size), "seed": self.seed,
            "greedy_check": greedy_check,
        }  # fmt: skip
        limit = self.model.objective.scored_length(self.model.context_length)
        self.max_canvas = int(max_length) if max_length else limit

    @property
    def tokenizer_name(self) -> str:
        return f"llada:{self.ckpt}"

    def _encode(self, text: str) -> Ids:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _fit(self, context: Ids, answer: Ids) -> Ids:
        """The context, cut from the left so that context + answer fits the model."""
        if self.max_canvas is None:
            return context
        if len(answer) >= self.max_canvas:
            raise ValueError(
                f"a continuation of {len(answer)} tokens leaves no room for context in the "
                f"model's {self.max_canvas} positions"
            )
        return context[max(0, len(context) - (self.max_canvas - len(answer))) :]

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        results = []
        for request in requests:
            context, continuation = request.args
            answer = self._encode(continuation)
            if not answer:
                raise ValueError(f"continuation {continuation!r} has no tokens")
            prefixed = [*self.model.prefix_ids, *self._encode(context)]
            result = self.model.score_ids(self._fit(prefixed, answer), answer, **self.scoring)
            self.cache_hook.add_partial("loglikelihood", request.args, result)
            results.append(result)
        return results

    @torch.no_grad()
    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        start = self.tokenizer.eos_token_id
        window = (self.max_canvas or 2049) - 1
        results = []
        for request in requests:
            (text,) = request.args
            pieces = get_rolling_token_windows(self._encode(text), start, window, context_len=1)
            total = sum(
                self.model.score_ids(*make_disjoint_window(piece), **self.scoring)[0]
                for piece in pieces
            )
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
            results.append(float(total))
        return results

    def _settings(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Our sampler settings for one lm_eval gen_kwargs dict (greedy unless do_sample)."""
        n_tokens = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
        temperature = float(gen_kwargs.get("temperature", 0.0) or 0.0)
        sampled = bool(gen_kwargs.get("do_sample", False)) and temperature > 0
        settings = {**self.generation, "n_tokens": n_tokens}
        settings["steps"] = self.generation.get("steps") or n_tokens  # default: a token a step
        settings["sampler"] = "multinomial" if sampled else "greedy"
        settings["temperature"] = temperature if sampled else 0.0
        settings.update({k: gen_kwargs[k] for k in ("top_k", "top_p") if k in gen_kwargs})
        return settings

    def _prompt(self, context: str, n_tokens: int) -> str:
        """The context, cut from the left (in tokens) to leave room for n_tokens."""
        ids = self._encode(context)
        room = None if self.max_canvas is None else self.max_canvas - n_tokens
        if room is None or len(ids) + len(self.model.prefix_ids) <= room:
            return context
        if room - len(self.model.prefix_ids) < 1:
            raise ValueError(f"max_gen_toks={n_tokens} leaves no room in {self.max_canvas}")
        return self.tokenizer.decode(ids[len(ids) - room + len(self.model.prefix_ids) :])

    @torch.no_grad()
    def generate_until(self, requests: list[Instance]) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):  # one sampler setting per group
            groups.setdefault(json.dumps(request.args[1], sort_keys=True), []).append(index)
        for key, indices in groups.items():
            gen_kwargs = json.loads(key)
            settings = self._settings(gen_kwargs)
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            for first in range(0, len(indices), self.batch_size):
                chunk = indices[first : first + self.batch_size]
                prompts = [self._prompt(requests[i].args[0], settings["n_tokens"]) for i in chunk]
                texts = self.model.generate_with_info(prompts, seed=self.seed, **settings).texts
                for index, text in zip(chunk, texts, strict=True):
                    results[index] = cut_at(text, until)
                    self.cache_hook.add_partial(
                        "generate_until", requests[index].args, results[index]
                    )
        return [text or "" for text in results]


def pick_device(requested: str | None) -> str:
    """The device asked for, unless it is CUDA on a machine without: lm_eval's CLI asks for
    "cuda" by default, and its own HF model falls back to the CPU then, as this does."""
    cuda_missing = (
        bool(requested) and requested.startswith("cuda") and not torch.cuda.is_available()
    )
    return default_device(None if cuda_missing else requested)


def cut_at(text: str, until: list[str]) -> str:
    """The text before the first occurrence of any stop string."""
    ends = [text.find(stop) for stop in until if stop and stop in text]
    return text[: min(ends)] if ends else text


def main(argv: list[str] | None = None) -> None:
    """lm_eval's CLI with the `llada` model registered (same arguments as `lm_eval`)."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    with fail_cleanly():
        cli_evaluate()


if __name__ == "__main__":
    main()
