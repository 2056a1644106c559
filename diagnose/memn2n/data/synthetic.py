"""The embedded synthetic corpus: topics plus positional copies, with a known floor.

Generative process (one preset = one :class:`SyntheticSpec`):

* ``K`` topics each own a disjoint set of ``W`` content words, named ``t{z}w{j}``.
  Vocabulary: PAD, UNK, ``<eos>``, then the ``K*W`` content words (UNK never
  occurs).
* The corpus is a sequence of documents (lines), each exactly ``n`` content tokens
  followed by ``<eos>``.
* Each document draws a topic ``z ~ Uniform(K)``. Within a topic, words follow a
  Zipf law ``q_j ∝ 1/(j+1)^s`` over its ``W`` words (``s = 0`` is uniform).
* Token ``i`` (0-based) of the document: for ``i < k``, ``x_i ~ q`` over topic
  ``z``'s words (fresh). For ``i >= k``, with probability ``p`` it COPIES the token
  exactly ``k`` steps back, ``x_i = x_{i-k}``; otherwise it is fresh from ``q``.

A bag of words can exploit the topic; only a model that knows position can
exploit the copies.

Bayes floor (exact entropy rate given the full past, nats per token). Given the
past, the topic is known after the document's first token (word sets are
disjoint), the position in the document is known, and ``x_i`` depends on the past
only through ``x_{i-k}``. Averaging over the ``n + 1`` tokens of a document (the
certain ``<eos>`` included, and the next document's first token, whose topic is
still unknown)::

    floor = [ (ln K + H(q)) + (k-1)·H(q) + (n-k)·H_copy + 0 ] / (n+1)
    H_copy = Σ_j q_j · H(r_j),   r_j(w) = (1-p)·q_w + p·[w == j]

Unigram entropy of the targets. Every content position has marginal ``q`` given
``z`` (see :func:`_exact_entropies`), so a target is ``<eos>`` with probability
``1/(n+1)`` and word ``w`` of topic ``z`` with probability ``(n/(n+1))·q_w/K``::

    H_1 = -(1/(n+1))·ln(1/(n+1)) - Σ_{z,w} (n/(n+1))(q_w/K)·ln((n/(n+1))·q_w/K)

Both are computed in closed form, not by sampling.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from diagnose.memn2n.data.corpus import EOS, PAD, UNK, Corpus, split_from_lines, split_stats
from diagnose.errors import CorpusError

_FIRST_WORD_ID = 3  # after PAD, UNK, <eos>
_EOS_ID = 2
_MIN_HELDOUT_DOCS = 8  # so even a tiny corpus has a few whole validation/test documents


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the topic/copy process (see the module docstring)."""

    topics: int  # K: topics, each owning its own words; 1 removes topic structure
    words_per_topic: int  # W: content words per topic; V = 3 + K*W
    doc_len: int  # n: content tokens per document, followed by <eos>
    copy_lag: int  # k: a copy repeats the token exactly k positions back
    copy_prob: float  # p: chance that a position i >= k copies; 0 removes positional structure
    zipf: float  # s: within-topic word law q_j ∝ 1/(j+1)^s; 0 is uniform
    train_tokens: int  # training tokens (rounded up to whole documents)
    heldout_fraction: float = 0.1  # valid and test each get this fraction of train_tokens

    def __post_init__(self) -> None:
        problems = []
        if self.topics < 1:
            problems.append("topics >= 1")
        if self.words_per_topic < 2:
            problems.append("words_per_topic >= 2")
        if not 1 <= self.copy_lag <= self.doc_len:
            problems.append("1 <= copy_lag <= doc_len")
        if not 0.0 <= self.copy_prob <= 1.0:
            problems.append("0 <= copy_prob <= 1")
        if self.zipf < 0:
            problems.append("zipf >= 0")
        if self.train_tokens < 1 or not 0.0 < self.heldout_fraction <= 1.0:
            problems.append("train_tokens >= 1 and 0 < heldout_fraction <= 1")
        if problems:
            raise CorpusError(f"invalid synthetic spec {self}; need {', '.join(problems)}")

    @property
    def vocab_size(self) -> int:
        """PAD, UNK, <eos> and the K*W content words."""
        return _FIRST_WORD_ID + self.topics * self.words_per_topic


SYNTHETIC_PRESETS: dict[str, SyntheticSpec] = {
    # Default, V = 195, ln V = 5.27: unigram entropy 4.68, Bayes floor 1.82 nats.
    # Knowing the topic (after a doc's first word) removes ln 8 = 2.08 nats per
    # word; the lag-3 copies (p = 0.6) need a memory of >= 3 and position.
    "topic-copy": SyntheticSpec(
        topics=8, words_per_topic=24, doc_len=15, copy_lag=3, copy_prob=0.6, zipf=1.0,
        train_tokens=400_000,
    ),
    # For tests and smoke runs: V = 35, ~20k training tokens, floor 1.32 nats.
    "topic-copy-small": SyntheticSpec(
        topics=4, words_per_topic=8, doc_len=9, copy_lag=2, copy_prob=0.6, zipf=1.0,
        train_tokens=20_000,
    ),
    # Same V as the default, no copies (floor 2.63): topic is the only structure.
    "topics-only": SyntheticSpec(
        topics=8, words_per_topic=24, doc_len=15, copy_lag=3, copy_prob=0.0, zipf=1.0,
        train_tokens=400_000,
    ),
    # Same V as the default, one topic: only positional copies beat the unigram
    # (4.10 -> floor 2.46).
    "copy-only": SyntheticSpec(
        topics=1, words_per_topic=192, doc_len=15, copy_lag=3, copy_prob=0.6, zipf=1.0,
        train_tokens=400_000,
    ),
}


def zipf_weights(words: int, s: float) -> np.ndarray:
    """The within-topic word law ``q_j ∝ 1/(j+1)^s``, j = 0..words-1."""
    q = 1.0 / np.arange(1, words + 1, dtype=np.float64) ** s
    return q / q.sum()


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    # 0·ln 0 = 0: mask zeros instead of letting log produce -inf·0 = nan.
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=axis)


def _exact_entropies(spec: SyntheticSpec) -> tuple[float, float]:
    """Closed-form (bayes_floor, unigram_entropy_exact) in nats per token."""
    K, n, k, p = spec.topics, spec.doc_len, spec.copy_lag, spec.copy_prob
    q = zipf_weights(spec.words_per_topic, spec.zipf)
    h_q = float(_entropy(q))
    # r[j] is the next-token law when x_{i-k} = j: (1-p) q + p·onehot(j), all j at once.
    r = (1.0 - p) * q[None, :] + p * np.eye(q.size)
    h_copy = float(q @ _entropy(r, axis=1))
    floor = ((math.log(K) + h_q) + (k - 1) * h_q + (n - k) * h_copy) / (n + 1)
    # Marginal of x_i given z is q at every position, by induction on i: fresh draws
    # are q; a copy equals x_{i-k}, which is q-distributed by the induction
    # hypothesis, and the coin is independent of it, so the mixture
    # (1-p)·q + p·q = q.
    word_p = (n / (n + 1)) * np.tile(q / K, K)
    eos_p = 1.0 / (n + 1)
    unigram = float(-eos_p * math.log(eos_p) + _entropy(word_p))
    return floor, unigram


def _generate(spec: SyntheticSpec, docs: int, rng: np.random.Generator) -> np.ndarray:
    """``docs`` documents as an int32 (docs, n+1) id array, ``<eos>`` last."""
    K, W, n, k = spec.topics, spec.words_per_topic, spec.doc_len, spec.copy_lag
    cdf = np.cumsum(zipf_weights(W, spec.zipf))
    # One row of uniforms per document (topic, n fresh draws, n copy coins), drawn
    # row-major: the first D documents are the same whatever the total, so a
    # larger corpus extends a smaller one with the same seed.
    u = rng.random((docs, 1 + 2 * n))
    z = np.minimum((u[:, 0] * K).astype(np.int64), K - 1)
    # Inverse-CDF sampling; min() guards the float round-off case u >= cdf[-1].
    fresh = np.minimum(np.searchsorted(cdf, u[:, 1 : n + 1], side="right"), W - 1)
    copy = u[:, n + 1 :] < spec.copy_prob
    x = (z[:, None] * W + fresh).astype(np.int32)
    # Loop over positions only: column i must see the already-resolved column i-k
    # (a copy of a copy is a copy of the original).
    for i in range(k, n):
        x[:, i] = np.where(copy[:, i], x[:, i - k], x[:, i])
    out = np.empty((docs, n + 1), dtype=np.int32)
    out[:, :n] = x + _FIRST_WORD_ID
    out[:, n] = _EOS_ID
    return out


def make_synthetic(name: str = "topic-copy", *, tokens: int | None = None, seed: int = 0) -> Corpus:
    """Generates a synthetic corpus from a preset.

    Args:
        name: A key of :data:`SYNTHETIC_PRESETS`, optionally prefixed ``synthetic:``.
        tokens: Training tokens, overriding the preset (rounded up to whole
            documents); valid and test each get 10%, at least a few documents.
        seed: Seed of the generator; train, valid and test use separate child
            streams, so the train size does not change valid or test (beyond
            their length: a longer split extends a shorter one).

    Returns:
        The corpus, with exact ``bayes_floor`` and ``unigram_entropy_exact``.

    Raises:
        CorpusError: For an unknown preset or a bad ``tokens``/``seed``.
    """
    # Accept the corpus's own name back ("synthetic:topic-copy"), as users see it.
    name = name.removeprefix("synthetic:") if isinstance(name, str) else name
    spec = SYNTHETIC_PRESETS.get(name)
    if spec is None:
        raise CorpusError(
            f"unknown synthetic corpus 'synthetic:{name}'; use one of: "
            + ", ".join(sorted(SYNTHETIC_PRESETS))
        )
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 1:
            raise CorpusError(
                f"synthetic corpus 'synthetic:{name}': tokens must be a positive integer, "
                f"got {tokens!r}; pass e.g. 100000"
            )
        spec = dataclasses.replace(spec, train_tokens=int(tokens))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CorpusError(
            f"synthetic corpus 'synthetic:{name}': seed must be a non-negative integer, "
            f"got {seed!r}; pass e.g. 0"
        )

    doc_tokens = spec.doc_len + 1
    train_docs = -(-spec.train_tokens // doc_tokens)
    held_tokens = round(spec.heldout_fraction * spec.train_tokens)
    held_docs = max(_MIN_HELDOUT_DOCS, -(-held_tokens // doc_tokens))
    streams = np.random.default_rng(int(seed)).spawn(3)
    splits = []
    for docs, rng in zip((train_docs, held_docs, held_docs), streams):
        block = _generate(spec, docs, rng)
        splits.append(split_from_lines(block.reshape(-1), np.full(docs, doc_tokens)))
    train, valid, test = splits

    width = max(2, len(str(spec.words_per_topic - 1)))  # "t3w07": names sort like ids
    vocab = (PAD, UNK, EOS) + tuple(
        f"t{z}w{j:0{width}d}" for z in range(spec.topics) for j in range(spec.words_per_topic)
    )
    floor, unigram_exact = _exact_entropies(spec)
    stats = split_stats(
        len(vocab), train, valid, test, bayes_floor=floor, unigram_entropy_exact=unigram_exact
    )
    stats["process"] = dataclasses.asdict(spec)
    stats["seed"] = int(seed)
    return Corpus(
        name=f"synthetic:{name}",
        source=f"synthetic:{name}",
        vocab=vocab,
        train=train,
        valid=valid,
        test=test,
        stats=stats,
    )
