"""Denoising-trajectory frames and their renderers, on hand-made trajectories and a toy tokenizer."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llada import viz
from llada.diffusion.remasking import LowConfidenceRemasking
from llada.diffusion.sampling import generate
from llada.diffusion.token_choice import Greedy

WORDS = ["[PAD]", "[UNK]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "##s", "."]
ID = {word: i for i, word in enumerate(WORDS)}
MASK = ID["[MASK]"]
M = MASK


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordPiece(dict(ID), unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]"
    )


def canvas(*words: str | int) -> torch.Tensor:
    """(1, L) canvas from words (or ids)."""
    return torch.tensor([[w if isinstance(w, int) else ID[w] for w in words]])


# A remasking trajectory: "sat" appears at step 2, is masked again at step 3, returns at step 4.
TRAJECTORY = [
    canvas("the", M, M, M, M),
    canvas("the", M, "sat", M, M),
    canvas("the", "cat", M, M, "."),
    canvas("the", "cat", "sat", "on", "."),
]


def states(frames: list[viz.Frame]) -> list[list[str]]:
    return [[state for _, state in frame] for frame in frames]


def test_states_follow_each_token(tokenizer: PreTrainedTokenizerFast) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)
    assert states(frames) == [
        ["new", "mask", "mask", "mask", "mask"],
        ["old", "mask", "new", "mask", "mask"],
        ["old", "new", "remasked", "mask", "new"],
        ["old", "old", "new", "new", "old"],
    ]
    assert viz.frame_text(frames[0]) == "the ░ ░ ░ ░"
    assert viz.frame_text(frames[2]) == "the cat ░ ░."
    assert viz.frame_text(frames[-1]) == "the cat sat on."


def test_wordpiece_continuations_join_and_rows_are_chosen(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    batch = torch.cat([canvas("a", "dog", "sat", "."), canvas("the", "cat", "##s", "sat")])
    (frame,) = viz.frames_from_trajectory([batch], tokenizer, MASK, row=1)
    assert viz.frame_text(frame) == "the cats sat"
    assert [text for text, _ in frame] == ["the", " cat", "s", " sat"]


def test_frames_start_at_start(tokenizer: PreTrainedTokenizerFast) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK, start=2)
    assert [len(frame) for frame in frames] == [3, 3, 3, 3]
    assert viz.frame_text(frames[-1]) == "sat on."
    assert states(frames)[0] == ["mask", "mask", "mask"]
    # With the starting canvas, given tokens in view are "old" from the first step.
    initial = canvas("the", M, M, M, M)
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK, initial=initial)
    assert states(frames)[0] == ["old", "mask", "mask", "mask", "mask"]


def test_byte_level_bpe_pieces_render_spaces() -> None:
    vocab = {"[MASK]": 0, "the": 1, "Ġcat": 2, "s": 3, "Ċ": 4}
    backend = Tokenizer(models.BPE(vocab, merges=[]))
    backend.decoder = decoders.ByteLevel()
    frames = viz.frames_from_trajectory(
        [torch.tensor([[1, 2, 3, 0, 4, 2]])], backend, mask_id=0
    )  # a bare tokenizers.Tokenizer works too
    assert viz.frame_text(frames[0]) == "the cats ░\n cat"


def test_render_rich_styles(tokenizer: PreTrainedTokenizerFast) -> None:
    frame = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)[2]
    text = viz.render_rich(frame)
    assert text.plain == viz.frame_text(frame)
    styles = [(text.plain[span.start : span.end].strip(), str(span.style)) for span in text.spans]
    assert styles == [  # "the" is old: default style, no span
        ("cat", "bold green"),
        ("░", "bold red"),  # remasked
        ("░", "dim"),  # still masked
        (".", "bold green"),
    ]


def test_gif_has_a_frame_per_step_and_holds_the_last(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)
    path = viz.save_gif(frames, tmp_path / "sub" / "out.gif", fps=10, width=160, final_hold=1.0)
    assert path == tmp_path / "sub" / "out.gif"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.gif"]  # no temp file left
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == len(TRAJECTORY)
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
        assert gif.size[0] == 160
        assert gif.size[1] > 40  # narrow: the text wrapped onto more lines
    assert durations[-1] == 1000
    assert durations[-1] > max(durations[:-1])


def test_html_contains_every_step(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)
    path = viz.save_html(frames, tmp_path / "deep" / "out.html")
    page = path.read_text(encoding="utf-8")

    class Steps(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[str] = []
            self.inside = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "div" and "step" in (dict(attrs).get("class") or "").split():
                self.texts.append("")
                self.inside = True
            elif tag == "div":
                self.inside = False

        def handle_endtag(self, tag: str) -> None:
            if tag == "div":
                self.inside = False

        def handle_data(self, data: str) -> None:
            if self.inside:
                self.texts[-1] += data

    parser = Steps()
    parser.feed(page)
    assert parser.texts == [viz.frame_text(frame) for frame in frames]
    assert 'type="range"' in page and "<script>" in page
    assert "http" not in page and "src=" not in page  # self-contained
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.html"]


def test_animation_off_a_terminal_prints_the_final_frame(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)
    console = Console(record=True, file=io.StringIO(), width=80)
    viz.animate_in_terminal(frames, fps=1000, console=console)
    out = console.export_text()
    assert out.rstrip().endswith(viz.frame_text(frames[-1]))
    assert viz.frame_text(frames[0]) not in out  # only the final frame


def test_animation_on_a_terminal_ends_on_the_final_frame(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    frames = viz.frames_from_trajectory(TRAJECTORY, tokenizer, MASK)
    console = Console(record=True, file=io.StringIO(), width=80, force_terminal=True)
    viz.animate_in_terminal(frames, fps=1000, console=console)
    assert console.export_text().rstrip().endswith(viz.frame_text(frames[-1]))


def test_frames_from_a_recorded_generation(tokenizer: PreTrainedTokenizerFast) -> None:
    table = torch.randn(6, len(WORDS), generator=torch.Generator().manual_seed(0))
    table[:, :3] = -1e9  # never pad, unk or mask

    def logits_fn(canvas: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return table.expand(canvas.shape[0], -1, -1)

    start = canvas("the", "cat", M, M, M, M)
    result = generate(
        logits_fn,
        start,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        gen_start=2,
        record=True,
    )
    frames = viz.frames_from_trajectory(result.trajectory, tokenizer, MASK, start=2)
    assert len(frames) == len(result.trajectory)
    news = [sum(state == "new" for _, state in frame) for frame in frames]
    assert sum(news) == 4  # each generated token is new exactly once
    assert "mask" not in states(frames)[-1]
