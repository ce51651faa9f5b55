"""Show how a masked diffusion LM fills its canvas: terminal animation, GIF and HTML.

Autoregressive text appears left to right; a diffusion sampler commits tokens anywhere, in any
order, and ReMDM-style samplers even take tokens back. Watching the canvas step by step is the
quickest way to see what a remasking strategy or schedule actually does. Everything here works
on *frames*: per step, the tokens of one row as ``(text, state)`` pairs (see
:func:`frames_from_trajectory`), so the three renderers agree on what each token looked like.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text
from torch import Tensor

from llada.atomic import atomic_write

__all__ = [
    "MASK_GLYPH",
    "STATES",
    "Frame",
    "animate_in_terminal",
    "frame_text",
    "frames_from_trajectory",
    "render_rich",
    "save_gif",
    "save_html",
]

# One token of a frame: its text (with the space before it, if any) and its state.
Frame = list[tuple[str, str]]

# "mask": still masked; "new": committed at this step; "old": committed earlier;
# "remasked": a token at the previous step, masked again at this one (ReMDM).
STATES = ("mask", "new", "old", "remasked")

# One character, so a masked position takes the same room in every frame it is masked in.
MASK_GLYPH = "░"

RICH_STYLES = {"mask": "dim", "new": "bold green", "old": "", "remasked": "bold red"}

# GIF colours on a dark background, close to a terminal's rendering of RICH_STYLES.
_BACKGROUND = (24, 24, 27)
_COUNTER = (150, 150, 160)
_GIF_COLOURS = {
    "mask": (95, 95, 105),
    "new": (80, 220, 110),
    "old": (225, 225, 225),
    "remasked": (235, 75, 75),
}

# WordPiece decoding (cleanup=True) puts no space before these.
_NO_SPACE_BEFORE = frozenset(".,!?;:)]}%")
_NO_SPACE_AFTER = frozenset("([{")


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE pieces are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_OF_CHAR = {char: byte for byte, char in _bytes_to_unicode().items()}


def _scheme(tokenizer: Any) -> str:
    """How pieces join into text: "wordpiece" (##), "bytelevel" (Ġ), "sentencepiece" (▁), "plain".

    The decoder says it directly; a vocabulary scan covers tokenizers without one (or with a
    decoder Sequence).
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    decoder = type(getattr(backend, "decoder", None)).__name__
    if decoder == "WordPiece":
        return "wordpiece"
    if decoder == "ByteLevel":
        return "bytelevel"
    if decoder == "Metaspace":
        return "sentencepiece"
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for prefix, scheme in (("Ġ", "bytelevel"), ("##", "wordpiece"), ("▁", "sentencepiece")):
        if any(token.startswith(prefix) for token in vocab):
            return scheme
    return "plain"


def _id_to_token(tokenizer: Any) -> Callable[[list[int]], list[str]]:
    """Pieces for ids, from a transformers tokenizer or a bare `tokenizers.Tokenizer`."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return lambda ids: [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
    return lambda ids: [str(tokenizer.id_to_token(i)) for i in ids]


def _display(piece: str, scheme: str) -> tuple[str, bool]:
    """(text, joins_previous) for one piece: joined pieces get no space before them."""
    if scheme == "wordpiece":
        if piece.startswith("##") and len(piece) > 2:
            return piece[2:], True
        return piece, piece in _NO_SPACE_BEFORE
    if scheme == "bytelevel":
        if not all(char in _BYTE_OF_CHAR for char in piece):
            return piece, False  # an added/special token, stored as plain text
        text = bytes(_BYTE_OF_CHAR[char] for char in piece).decode("utf-8", errors="replace")
        return text, True  # the space (if any) is part of the piece
    if scheme == "sentencepiece":
        return piece.replace("▁", " "), True
    return piece, False


def frames_from_trajectory(
    trajectory: Sequence[Tensor],
    tokenizer: Any,
    mask_id: int,
    row: int = 0,
    start: int = 0,
    *,
    initial: Tensor | None = None,
) -> list[Frame]:
    """Per step, one row's tokens from `start` as (text, state), ready for any renderer.

    `trajectory` is the canvas (B, L) (or (L,)) after each step, as ``generate(record=True)``
    returns it; `start` skips the prompt. A token's state compares it with the previous step:
    "new" the step it appears (or changes), "old" after, "mask" while masked, "remasked" the step
    a token is masked again. Before the first step everything from `start` counts as masked,
    unless `initial` (the canvas the sampler started from) says otherwise: pass it when the shown
    span holds given tokens (a prompt, an infilling template) that should not light up as new.
    Texts carry the space before them, so ``"".join`` of a frame's texts reads as the canvas.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    to_tokens = _id_to_token(tokenizer)
    scheme = _scheme(tokenizer)
    pieces: dict[int, tuple[str, bool]] = {}

    def row_ids(canvas: Tensor) -> list[int]:
        ids = canvas if canvas.dim() == 1 else canvas[row]
        return [int(i) for i in ids[start:].tolist()]

    def piece(token_id: int) -> tuple[str, bool]:
        if token_id not in pieces:
            pieces[token_id] = _display(to_tokens([token_id])[0], scheme)
        return pieces[token_id]

    previous: list[int] | None = row_ids(initial) if initial is not None else None
    frames: list[Frame] = []
    for canvas in trajectory:
        ids = row_ids(canvas)
        before = previous if previous is not None else [mask_id] * len(ids)
        frame: Frame = []
        last_text = ""
        for position, (token_id, old_id) in enumerate(zip(ids, before, strict=True)):
            if token_id == mask_id:
                state = "mask" if old_id == mask_id else "remasked"
                text, joins = MASK_GLYPH, False
            else:
                state = "old" if old_id == token_id else "new"
                text, joins = piece(token_id)
            after_open = scheme == "wordpiece" and last_text[-1:] in _NO_SPACE_AFTER
            space = position > 0 and not joins and not after_open
            if position == 0:
                text = text.lstrip(" ")
            frame.append(((" " if space else "") + text, state))
            last_text = text
        frames.append(frame)
        previous = ids
    return frames


def frame_text(frame: Frame) -> str:
    """The plain text of a frame (masks as MASK_GLYPH)."""
    return "".join(text for text, _ in frame)


# --------------------------------------------------------------------------------------------
# Terminal
# --------------------------------------------------------------------------------------------


def render_rich(frame: Frame) -> Text:
    """A frame as rich Text: mask dim, new bold green, old plain, remasked red."""
    text = Text()
    for piece, state in frame:
        text.append(piece, style=RICH_STYLES.get(state, ""))
    return text


def _counter(step: int, total: int) -> Text:
    return Text(f"step {step} / {total}", style="dim")


def animate_in_terminal(
    frames: Sequence[Frame], fps: float = 10.0, console: Console | None = None
) -> None:
    """Play the frames in place with `rich.live.Live`, then leave the final frame printed.

    Off a terminal (a pipe, a file, a log) an animation would only write every frame one after
    another, so just the final frame is printed.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not frames:
        return
    console = console if console is not None else Console()
    total = len(frames)
    if console.is_terminal and not console.is_dumb_terminal:
        # transient: a frame taller than the screen is cropped while live, so the final frame is
        # printed in full once the live display has gone.
        with Live(console=console, auto_refresh=False, transient=True) as live:
            for step, frame in enumerate(frames, start=1):
                live.update(Group(_counter(step, total), render_rich(frame)), refresh=True)
                time.sleep(1.0 / fps)
        console.print(_counter(total, total))
    console.print(render_rich(frames[-1]))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write through `llada.atomic.atomic_write`, so readers never see half a file."""
    with atomic_write(path, "wb") as handle:
        write(handle)
    return Path(path).expanduser()


def _font(size: int) -> Any:
    """PIL's bundled font: scalable on newer pillow (``load_default(size=)``), bitmap before."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):
        return ImageFont.load_default()


def _layout(
    frame: Frame, measure: Callable[[str], float], box: float, line_width: float
) -> list[list[tuple[float, str, str]]]:
    """Wrap a frame into lines of (x, text, state) that fit `line_width` pixels.

    Masks are drawn as boxes (the default font has no "░"); a token that does not fit moves to
    the next line without its leading space; explicit newlines break lines.
    """

    def width(text: str) -> float:
        return sum(box if part == MASK_GLYPH else measure(part) for part in _split_glyphs(text))

    lines: list[list[tuple[float, str, str]]] = [[]]
    x = 0.0
    for text, state in frame:
        for index, chunk in enumerate(text.replace("\t", "    ").split("\n")):
            if index > 0:
                lines.append([])
                x = 0.0
            if not chunk:
                continue
            w = width(chunk)
            if x > 0 and x + w > line_width:
                chunk = chunk.lstrip(" ")
                w = width(chunk)
                lines.append([])
                x = 0.0
            lines[-1].append((x, chunk, state))
            x += w
    return lines


def _split_glyphs(text: str) -> list[str]:
    """Text split around MASK_GLYPH, which is drawn as a box rather than a character."""
    parts: list[str] = []
    for index, part in enumerate(text.split(MASK_GLYPH)):
        if index > 0:
            parts.append(MASK_GLYPH)
        if part:
            parts.append(part)
    return parts


def save_gif(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    fps: float = 8.0,
    width: int = 800,
    final_hold: float = 1.5,
) -> Path:
    """An animated GIF of the frames (one per step, the last held `final_hold` s); returns its path.

    Shareable where a terminal recording is not: in a README, an issue or a slide.
    """
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("no frames to draw")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    font = _font(16)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths: dict[str, float] = {}

    def measure(text: str) -> float:
        if text not in widths:
            widths[text] = scratch.textlength(text, font=font)
        return widths[text]

    ascent_descent = font.getbbox("Ag[]|y")
    line_height = int(max(ascent_descent[3], 12) + 6)
    box = max(measure("M"), 6.0)
    margin = 16
    line_width = max(width - 2 * margin, 40)
    layouts = [_layout(frame, measure, box, line_width) for frame in frames]
    top = margin + line_height + 8  # below the step counter
    height = top + line_height * max(len(lines) for lines in layouts) + margin
    total = len(frames)

    images = []
    for step, lines in enumerate(layouts, start=1):
        image = Image.new("RGB", (width, height), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        draw.text((margin, margin), f"step {step} / {total}", font=font, fill=_COUNTER)
        for row, line in enumerate(lines):
            y = top + row * line_height
            for x0, text, state in line:
                colour = _GIF_COLOURS.get(state, _GIF_COLOURS["old"])
                x = margin + x0
                for part in _split_glyphs(text):
                    if part == MASK_GLYPH:
                        draw.rectangle(
                            (x + 1, y + 3, x + box - 2, y + line_height - 5), fill=colour
                        )
                        x += box
                        continue
                    draw.text((x, y), part, font=font, fill=colour)
                    if state == "new":  # bold, as in the terminal
                        draw.text((x + 1, y), part, font=font, fill=colour)
                    x += measure(part)
        images.append(image)

    frame_ms = max(round(1000.0 / fps), 20)
    durations = [frame_ms] * total
    durations[-1] = max(round(final_hold * 1000.0), frame_ms)

    def write(handle: IO[bytes]) -> None:
        images[0].save(
            handle,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            disposal=1,
        )

    return _atomic_write(path, write)


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { background: #18181b; color: #e1e1e1; margin: 2em auto; max-width: 60em;
       font: 16px/1.6 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.controls { display: flex; gap: .6em; align-items: center; margin-bottom: 1em; }
.controls input[type=range] { flex: 1; }
button { background: #2a2a30; color: inherit; border: 1px solid #444; padding: .2em .7em;
         font: inherit; cursor: pointer; }
#label { color: #9696a0; min-width: 9em; text-align: right; }
.step { display: none; white-space: pre-wrap; word-wrap: break-word; }
.step.on { display: block; }
.mask { color: #5f5f69; }
.new { color: #50dc6e; font-weight: bold; }
.old { color: #e1e1e1; }
.remasked { color: #eb4b4b; font-weight: bold; }
.legend { margin-top: 1.5em; color: #9696a0; font-size: 85%; }
</style>
</head>
<body>
<div class="controls">
<button id="prev" title="previous step (left arrow)">&#9664;</button>
<button id="play" title="play / pause (space)">play</button>
<button id="next" title="next step (right arrow)">&#9654;</button>
<input id="slider" type="range" min="1" max="__TOTAL__" value="__TOTAL__">
<span id="label">step __TOTAL__ / __TOTAL__</span>
</div>
<div id="steps">
__STEPS__
</div>
<div class="legend"><span class="mask">__GLYPH__ masked</span> &middot;
<span class="new">new this step</span> &middot; <span class="old">committed earlier</span>
&middot; <span class="remasked">__GLYPH__ remasked</span></div>
<script>
(function () {
  var steps = document.querySelectorAll(".step");
  var slider = document.getElementById("slider");
  var label = document.getElementById("label");
  var play = document.getElementById("play");
  var total = steps.length, current = total, timer = null, interval = __INTERVAL__;
  function show(k) {
    current = Math.max(1, Math.min(total, k));
    for (var i = 0; i < total; i++) steps[i].classList.toggle("on", i === current - 1);
    slider.value = current;
    label.textContent = "step " + current + " / " + total;
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; } play.textContent = "play"; }
  function start() {
    if (current >= total) show(1);
    play.textContent = "pause";
    timer = setInterval(function () {
      if (current >= total) { stop(); return; }
      show(current + 1);
    }, interval);
  }
  slider.addEventListener("input", function () { stop(); show(parseInt(slider.value, 10)); });
  document.getElementById("prev").onclick = function () { stop(); show(current - 1); };
  document.getElementById("next").onclick = function () { stop(); show(current + 1); };
  play.onclick = function () { if (timer) stop(); else start(); };
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { stop(); show(current - 1); }
    else if (e.key === "ArrowRight") { stop(); show(current + 1); }
    else if (e.key === " ") { e.preventDefault(); if (timer) stop(); else start(); }
  });
  show(total);
})();
</script>
</body>
</html>
"""


def _html_step(frame: Frame, step: int, total: int) -> str:
    """One step as a div of spans; runs of one state share a span to keep the file small."""
    runs: list[tuple[str, str]] = []
    for text, state in frame:
        if runs and runs[-1][1] == state:
            runs[-1] = (runs[-1][0] + text, state)
        else:
            runs.append((text, state))
    spans = "".join(
        f'<span class="{state if state in STATES else "old"}">{html.escape(text)}</span>'
        for text, state in runs
    )
    on = " on" if step == total else ""
    return f'<div class="step{on}" data-step="{step}">{spans}</div>'


def save_html(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    fps: float = 8.0,
    title: str = "llada denoising trajectory",
) -> Path:
    """A self-contained HTML page (no external assets) stepping through the frames; returns its path.

    Every step is in the page as static markup (the final one shown without JavaScript); a slider,
    buttons and the arrow keys move between steps, and "play" animates them at `fps`.
    """
    if not frames:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    total = len(frames)
    steps = "\n".join(_html_step(frame, k, total) for k, frame in enumerate(frames, start=1))
    page = (
        _HTML_TEMPLATE.replace("__TITLE__", html.escape(title))
        .replace("__INTERVAL__", str(max(round(1000.0 / fps), 10)))
        .replace("__GLYPH__", MASK_GLYPH)
        .replace("__TOTAL__", str(total))
        .replace("__STEPS__", steps)
    )
    return _atomic_write(path, lambda handle: handle.write(page.encode("utf-8")))
