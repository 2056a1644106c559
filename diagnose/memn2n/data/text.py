"""Loading word-level text corpora in the PTB language-modelling format.

Format: UTF-8 text, whitespace-separated tokens, one sentence per line; an
``<eos>`` token is appended after every line and blank lines are skipped. A
literal ``<unk>`` in the text (as in PTB) is the UNK id 1; a literal ``<pad>`` is
treated as unknown, since PAD is reserved for memory slots before the data.

``path`` is either one file, whose last ``valid_fraction`` of lines is held out
for validation (no test split), or a directory with exactly one ``*train*.txt``,
one ``*valid*.txt`` and optionally one ``*test*.txt`` (PTB's ``ptb.train.txt``,
``ptb.valid.txt``, ``ptb.test.txt``).

The vocabulary comes from the training split only: PAD, UNK, then tokens by
descending count, ties broken alphabetically so the ids are deterministic.
"""

from __future__ import annotations

import collections
import itertools
import math
import os

import numpy as np

from diagnose.memn2n.data.corpus import EOS, PAD, UNK, UNK_ID, Corpus, split_from_lines, split_stats
from diagnose.errors import CorpusError

_FORMAT_HINT = "pass a UTF-8 text file in PTB format (whitespace-separated tokens, one sentence per line)"
_DIR_HINT = "pass a directory holding exactly one *train*.txt, one *valid*.txt and optionally one *test*.txt"


def _read_lines(path: str) -> list[list[str]]:
    """Reads a PTB-format file into its non-blank lines of tokens, ``<eos>`` appended."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file '{path}' ({exc.strerror}); {_FORMAT_HINT}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise CorpusError(
            f"corpus file '{path}' looks binary (NUL byte at offset {nul}); {_FORMAT_HINT}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"corpus file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); {_FORMAT_HINT}"
        ) from None
    if text.startswith("\ufeff"):  # editors on Windows prepend a BOM; it is not a token
        text = text[1:]
    # Split on "\n" only (str.split() per line drops a trailing "\r"), so the line
    # structure is exactly the file's and not splitlines()'s wider notion of a break.
    lines = [words for words in (line.split() for line in text.split("\n")) if words]
    if not lines:
        raise CorpusError(f"corpus file '{path}' is empty (no tokens); {_FORMAT_HINT}")
    for words in lines:
        words.append(EOS)
    return lines


def _find_split_files(directory: str) -> tuple[str, str, str | None]:
    """Returns the train, valid and optional test file of a corpus directory."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise CorpusError(
            f"cannot list corpus directory '{directory}' ({exc.strerror}); {_DIR_HINT}"
        ) from None
    files = [n for n in names if n.endswith(".txt") and os.path.isfile(os.path.join(directory, n))]
    found = {role: [n for n in files if role in n] for role in ("train", "valid", "test")}
    listing = ", ".join(files) if files else "no .txt files"
    for role, required in (("train", True), ("valid", True), ("test", False)):
        matches = found[role]
        if len(matches) > 1:
            raise CorpusError(
                f"corpus directory '{directory}' has {len(matches)} *{role}*.txt files "
                f"({', '.join(matches)}); {_DIR_HINT}"
            )
        if required and not matches:
            raise CorpusError(
                f"corpus directory '{directory}' has no *{role}*.txt file (found: {listing}); {_DIR_HINT}"
            )
    pick = {role: (os.path.join(directory, m[0]) if m else None) for role, m in found.items()}
    return pick["train"], pick["valid"], pick["test"]


def _build_vocab(train_lines: list[list[str]], max_vocab: int | None, min_count: int) -> tuple[str, ...]:
    """PAD, UNK, then training tokens by (-count, token), ``<eos>`` always kept."""
    counts = collections.Counter(itertools.chain.from_iterable(train_lines))
    # Literal <unk>/<pad> are not vocabulary entries: <unk> already is id 1, and
    # PAD must never be a target.
    counts.pop(UNK, None)
    counts.pop(PAD, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    room = None if max_vocab is None else max_vocab - 2
    kept: list[str] = []
    eos_pending = True  # one slot stays reserved for <eos> until it has been placed
    for word, count in ranked:
        if word == EOS:
            kept.append(word)
            eos_pending = False
        elif count >= min_count and (room is None or len(kept) + eos_pending < room):
            kept.append(word)
    return (PAD, UNK, *kept)


def _encode(lines: list[list[str]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Maps token lines to an id stream and the line lengths; unknowns become UNK."""
    lengths = np.fromiter((len(words) for words in lines), dtype=np.int64, count=len(lines))
    total = int(lengths.sum())
    get = index.get
    ids = np.fromiter(
        (get(w, UNK_ID) for w in itertools.chain.from_iterable(lines)), dtype=np.int32, count=total
    )
    return ids, lengths


def _check_int(name: str, value: object, least: int, example: str) -> None:
    # bool is an int subclass, but max_vocab=True is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CorpusError(f"{name} must be an integer >= {least}, got {value!r}; pass e.g. {example}")


def _check_length(path: str, role: str, n_tokens: int, memory_size: int) -> None:
    if n_tokens < memory_size + 1:
        raise CorpusError(
            f"corpus file '{path}' has only {n_tokens} {role} tokens (with <eos>), fewer than "
            f"memory_size + 1 = {memory_size + 1}; pass a longer file or a smaller memory_size"
        )


def _read_splits(path: str, valid_fraction: float) -> tuple[str, list[tuple[str, list[list[str]]]]]:
    """The corpus's name and its splits as ``[(file, lines), ...]``: train, valid and maybe test.

    A directory gives its ``*train*``, ``*valid*`` (and ``*test*``) files; a single
    file gives its lines, the tail ``valid_fraction`` of them held out for validation.
    """
    if os.path.isdir(path):
        train_path, valid_path, test_path = _find_split_files(path)
        parts = [(train_path, _read_lines(train_path)), (valid_path, _read_lines(valid_path))]
        if test_path:
            parts.append((test_path, _read_lines(test_path)))
        stem = os.path.basename(train_path)[: -len(".txt")]
        return stem[: stem.find("train")].rstrip("._- ") or os.path.basename(os.path.normpath(path)), parts
    if os.path.isfile(path):
        if not (isinstance(valid_fraction, (int, float)) and 0.0 < valid_fraction < 1.0):
            raise CorpusError(f"valid_fraction must lie in (0, 1), got {valid_fraction!r}; pass e.g. 0.1")
        lines = _read_lines(path)
        if len(lines) < 2:
            raise CorpusError(
                f"corpus file '{path}' has only 1 non-blank line, so no tail can be held out for "
                "validation; pass a file with several lines or a train/valid directory"
            )
        n_valid = min(max(1, math.floor(valid_fraction * len(lines))), len(lines) - 1)
        return os.path.splitext(os.path.basename(path))[0] or "text", [(path, lines[:-n_valid]),
                                                                       (path, lines[-n_valid:])]
    if os.path.exists(path):
        raise CorpusError(f"corpus path '{path}' is neither a file nor a directory; {_FORMAT_HINT}")
    raise CorpusError(
        f"corpus path '{path}' does not exist; pass a UTF-8 text file in PTB format or a "
        "directory holding *train*.txt and *valid*.txt (e.g. ptb.train.txt, ptb.valid.txt)"
    )


def _checked_vocab(train: tuple[str, list[list[str]]], max_vocab: int | None, min_count: int) -> tuple[str, ...]:
    """The vocabulary of the training split; CorpusError when it leaves fewer than two words."""
    train_path, train_lines = train
    distinct = {w for words in train_lines for w in words} - {EOS, UNK, PAD}
    if len(distinct) < 2:
        raise CorpusError(
            f"corpus file '{train_path}' has a one-word vocabulary ({len(distinct)} distinct word(s) "
            "besides <eos>); a language model needs at least 2, pass a real text corpus"
        )
    vocab = _build_vocab(train_lines, max_vocab, min_count)
    if len(vocab) - 3 < 2:
        raise CorpusError(
            f"corpus file '{train_path}' keeps a one-word vocabulary (fewer than 2 words besides "
            f"<eos>) with max_vocab={max_vocab}, min_count={min_count}; raise max_vocab or lower min_count"
        )
    return vocab


def load_text_corpus(
    path: str,
    *,
    max_vocab: int | None = None,
    min_count: int = 1,
    valid_fraction: float = 0.1,
    memory_size: int = 1,
) -> Corpus:
    """Loads a PTB-format corpus from one file or a train/valid/test directory.

    Args:
        path: A text file (its tail lines become validation) or a directory with
            ``*train*.txt``, ``*valid*.txt`` and optionally ``*test*.txt``.
        max_vocab: Largest vocabulary, PAD and UNK included (at least 3); None
            keeps every training token with ``count >= min_count``.
        min_count: Training tokens seen fewer times map to UNK.
        valid_fraction: Fraction of a single file's lines held out (at least one).
        memory_size: The model's memory length; each split needs at least
            ``memory_size + 1`` tokens so one full window has a target.

    Returns:
        The corpus; ``stats["bayes_floor"]`` is None for text.

    Raises:
        CorpusError: For a missing, empty, binary, non-UTF-8 or too short file,
            a one-word vocabulary, an ill-formed directory or bad arguments.
    """
    path = os.fspath(path)
    if max_vocab is not None:
        _check_int("max_vocab", max_vocab, 3, "10000 (it counts PAD, UNK and <eos>)")
    _check_int("min_count", min_count, 1, "1")
    _check_int("memory_size", memory_size, 1, "100")
    name, parts = _read_splits(path, valid_fraction)
    vocab = _checked_vocab(parts[0], max_vocab, min_count)
    index = {w: i for i, w in enumerate(vocab) if w != PAD}
    splits = []
    for (file_path, lines), role in zip(parts, ("training", "validation", "test")):
        ids, lengths = _encode(lines, index)
        _check_length(file_path, role, ids.shape[0], memory_size)
        splits.append(split_from_lines(ids, lengths))
    train, valid = splits[0], splits[1]
    test = splits[2] if len(splits) > 2 else None
    return Corpus(
        name=name,
        source=path,
        vocab=vocab,
        train=train,
        valid=valid,
        test=test,
        stats=split_stats(len(vocab), train, valid, test),
    )
