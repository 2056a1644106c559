"""Token corpora as flat int32 streams, and the memory windows a model reads.

A :class:`Corpus` holds a vocabulary and three :class:`Split` token streams. A
split is one long stream of word ids (documents/sentences concatenated, each
ending in ``<eos>``) plus, for every token, the index where its line starts, so a
model can either read memory across line boundaries (``context="stream"``) or
restart it at every line (``context="line"``).

Ids ``PAD = 0`` and ``UNK = 1`` are fixed for every corpus; ``<eos>`` is an
ordinary vocabulary entry whose id depends on the corpus. PAD only ever fills
memory slots that lie before the data; it is never a target.

This module is numpy only (no TensorFlow) so that loading data stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnose.errors import CorpusError

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
PAD_ID, UNK_ID = 0, 1

SPLIT_NAMES = ("train", "valid", "test")
CONTEXTS = ("stream", "line")


# eq=False: the fields hold numpy arrays, for which generated __eq__ would raise
# ("truth value of an array is ambiguous"); identity equality is what callers need.
@dataclass(frozen=True, eq=False)
class Split:
    """One token stream of a corpus.

    Attributes:
        tokens: int32 array (N,), the word ids of the split in reading order.
        line_start: int32 array (N,), for each token index the index of the first
            token of its line (document); used to restart memory at each line.
    """

    tokens: np.ndarray
    line_start: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def split_from_lines(tokens: np.ndarray, line_lengths: np.ndarray) -> Split:
    """Builds a read-only :class:`Split` from a token stream and its line lengths.

    Args:
        tokens: Integer array (N,) of word ids.
        line_lengths: Integer array of positive line lengths summing to N
            (each line's ``<eos>`` included).

    Returns:
        The split, with ``line_start`` expanded to one entry per token.
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    lengths = np.asarray(line_lengths, dtype=np.int64)
    if int(lengths.sum()) != tokens.shape[0]:
        raise CorpusError(
            f"line lengths sum to {int(lengths.sum())} but the split has "
            f"{tokens.shape[0]} tokens; pass one length per line"
        )
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if lengths.size else lengths
    line_start = np.repeat(starts, lengths).astype(np.int32)
    # Read-only so a frozen Corpus really is immutable and safe to share.
    tokens.setflags(write=False)
    line_start.setflags(write=False)
    return Split(tokens=tokens, line_start=line_start)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A vocabulary and its train/valid/(test) token streams.

    Attributes:
        name: Short name, e.g. ``"ptb"`` or ``"synthetic:topic-copy"``.
        source: The path as the user gave it, or ``"synthetic:NAME"``.
        vocab: Id -> token; ``vocab[0] == PAD`` and ``vocab[1] == UNK``.
        train: Training stream (the vocabulary is built from it alone).
        valid: Validation stream.
        test: Test stream, or None when the source has none.
        stats: JSON-serialisable figures (entropies in nats): ``vocab_size``,
            ``ln_vocab``, ``unigram_entropy`` (of the train targets),
            ``bayes_floor`` and ``unigram_entropy_exact`` (None for text),
            ``tokens`` and ``oov_rate`` per split; synthetic corpora also carry
            ``process`` and ``seed``.
    """

    name: str
    source: str
    vocab: tuple[str, ...]
    train: Split
    valid: Split
    test: Split | None
    stats: dict

    @property
    def vocab_size(self) -> int:
        """Number of ids, PAD and UNK included."""
        return len(self.vocab)

    def get_split(self, split: str) -> Split:
        """Returns the split called ``"train"``, ``"valid"`` or ``"test"``.

        Raises:
            CorpusError: For an unknown name, or ``"test"`` when there is none.
        """
        if split not in SPLIT_NAMES:
            raise CorpusError(
                f"unknown split {split!r} for corpus '{self.source}'; use one of "
                + ", ".join(SPLIT_NAMES)
            )
        found = getattr(self, split)
        if found is None:
            raise CorpusError(
                f"corpus '{self.source}' has no test split; pass a directory with a "
                "*test*.txt file or evaluate on 'valid'"
            )
        return found

    def num_windows(self, split: str) -> int:
        """Number of (window, next-token) examples: every position with a successor."""
        return max(len(self.get_split(split)) - 1, 0)


def windows(
    split: Split,
    memory_size: int,
    positions: np.ndarray,
    context: str = "stream",
) -> tuple[np.ndarray, np.ndarray]:
    """Memory windows and next-token targets for the given positions.

    ``window[t] = tokens[t-memory_size+1 .. t]``: oldest first, newest last, the
    current word included (the MemN2N paper's language model). Slots before the
    start of the stream are PAD; with ``context="line"`` every slot before
    ``line_start[t]`` is PAD too, so memory restarts at each line.

    Args:
        split: The token stream.
        memory_size: Window length, at least 1.
        positions: Integer array of positions t with ``0 <= t < len(split) - 1``.
        context: ``"stream"`` (read across lines) or ``"line"``.

    Returns:
        ``(windows, targets)``: int32 ``(B, memory_size)`` and int32 ``(B,)`` with
        ``targets = tokens[t + 1]``.

    Raises:
        CorpusError: For a bad memory size, context or position.
    """
    if (
        isinstance(memory_size, bool)
        or not isinstance(memory_size, (int, np.integer))
        or memory_size < 1
    ):
        raise CorpusError(f"memory_size must be an integer >= 1, got {memory_size!r}; pass e.g. 100")
    if context not in CONTEXTS:
        raise CorpusError(f"unknown context {context!r}; use 'stream' or 'line'")
    t = np.asarray(positions)
    if t.ndim != 1 or not (t.size == 0 or np.issubdtype(t.dtype, np.integer)):
        raise CorpusError(
            f"positions must be a 1-D integer array, got shape {t.shape} dtype {t.dtype}; "
            "pass e.g. np.arange(n)"
        )
    n = len(split)
    t = t.astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= n - 1):
        raise CorpusError(
            f"positions must lie in [0, {n - 2}] for a split of {n} tokens "
            f"(got {int(t.min())}..{int(t.max())}); only positions with a next token have a target"
        )
    offsets = np.arange(-int(memory_size) + 1, 1, dtype=np.int64)
    idx = t[:, None] + offsets[None, :]
    first = split.line_start[t].astype(np.int64)[:, None] if context == "line" else 0
    pad = idx < first
    out = split.tokens[np.maximum(idx, 0)]
    out[pad] = PAD_ID
    targets = split.tokens[t + 1]
    return out.astype(np.int32, copy=False), targets.astype(np.int32, copy=False)


def entropy_of_counts(counts: np.ndarray) -> float:
    """Plug-in entropy (nats) of the empirical distribution given by ``counts``."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts / total
    return float(-(p * np.log(p)).sum())


def split_stats(
    vocab_size: int,
    train: Split,
    valid: Split,
    test: Split | None,
    *,
    bayes_floor: float | None = None,
    unigram_entropy_exact: float | None = None,
) -> dict:
    """The ``Corpus.stats`` dict shared by text and synthetic corpora."""
    splits = {"train": train, "valid": valid, "test": test}

    def oov(s: Split | None) -> float | None:
        if s is None or len(s) == 0:
            return None
        return float(np.count_nonzero(s.tokens == UNK_ID) / len(s))

    # Targets are tokens[1:]: the first token of the stream is never predicted.
    target_counts = np.bincount(train.tokens[1:], minlength=vocab_size)
    return {
        "vocab_size": int(vocab_size),
        "ln_vocab": float(np.log(vocab_size)),
        "unigram_entropy": entropy_of_counts(target_counts),
        "bayes_floor": None if bayes_floor is None else float(bayes_floor),
        "unigram_entropy_exact": (
            None if unigram_entropy_exact is None else float(unigram_entropy_exact)
        ),
        "tokens": {k: (None if s is None else len(s)) for k, s in splits.items()},
        "oov_rate": {k: oov(s) for k, s in splits.items()},
    }
