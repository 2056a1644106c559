"""Tests of the synthetic topic/copy corpus against independent estimates."""

import json
import math

import numpy as np
import pytest

from diagnose.memn2n.data import EOS, PAD, SYNTHETIC_PRESETS, UNK, make_synthetic
from diagnose.errors import CorpusError


def _q(spec):
    # Written out here rather than imported, so the tests check the module's law.
    q = np.array([1.0 / (j + 1) ** spec.zipf for j in range(spec.words_per_topic)])
    return q / q.sum()


def _h(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _conditional_entropy(context: np.ndarray, outcome: np.ndarray) -> float:
    """Plug-in H(outcome | context) per sample, from joint counts."""
    n = outcome.size
    _, joint = np.unique(context * (int(outcome.max()) + 1) + outcome, return_counts=True)
    _, marg = np.unique(context, return_counts=True)
    return _h(joint / n) - _h(marg / n)


@pytest.fixture(scope="module")
def big_small():
    """A large sample of the small preset, for Monte Carlo checks."""
    return make_synthetic("topic-copy-small", tokens=600_000, seed=7)


def test_same_seed_identical_different_seed_differs():
    a = make_synthetic("topic-copy-small", seed=3)
    b = make_synthetic("topic-copy-small", seed=3)
    c = make_synthetic("topic-copy-small", seed=4)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, split).tokens, getattr(b, split).tokens)
    assert not np.array_equal(a.train.tokens, c.train.tokens)
    assert not np.array_equal(a.valid.tokens, c.valid.tokens)
    prefixed = make_synthetic("synthetic:topic-copy-small", seed=3)
    assert prefixed.name == a.name == "synthetic:topic-copy-small"
    np.testing.assert_array_equal(prefixed.train.tokens, a.train.tokens)


def test_train_size_does_not_change_heldout_streams():
    a = make_synthetic("topic-copy-small", tokens=5_000, seed=1)
    b = make_synthetic("topic-copy-small", tokens=50_000, seed=1)
    assert len(b.train) > len(a.train)
    # Different held-out lengths (10% each) but the same child stream: shared prefix.
    n = min(len(a.valid), len(b.valid))
    np.testing.assert_array_equal(a.valid.tokens[:n], b.valid.tokens[:n])
    np.testing.assert_array_equal(a.test.tokens[:n], b.test.tokens[:n])


def test_documents_are_n_same_topic_words_then_eos():
    corpus = make_synthetic("topic-copy-small", seed=0)
    spec = SYNTHETIC_PRESETS["topic-copy-small"]
    n, W = spec.doc_len, spec.words_per_topic
    assert corpus.vocab[:3] == (PAD, UNK, EOS)
    assert len(corpus.vocab) == 3 + spec.topics * W == corpus.vocab_size
    eos = corpus.vocab.index(EOS)
    for split in (corpus.train, corpus.valid, corpus.test):
        docs = split.tokens.reshape(-1, n + 1)
        assert np.all(docs[:, n] == eos)
        words = docs[:, :n]
        assert words.min() >= 3 and words.max() < corpus.vocab_size
        topic = (words - 3) // W
        assert np.all(topic == topic[:, :1])
        np.testing.assert_array_equal(split.line_start, np.repeat(np.arange(len(docs)) * (n + 1), n + 1))
    assert len(corpus.train) >= spec.train_tokens
    assert len(corpus.valid) >= 0.1 * spec.train_tokens


def test_bayes_floor_matches_monte_carlo(big_small):
    spec = SYNTHETIC_PRESETS["topic-copy-small"]
    n, k, W = spec.doc_len, spec.copy_lag, spec.words_per_topic
    x = big_small.train.tokens.astype(np.int64)
    t = np.arange(x.size)
    pos = t - big_small.train.line_start
    topic = (x[big_small.train.line_start] - 3) // W
    # What the full past reveals: position, the topic once a word was seen, x_{i-k}.
    known_topic = np.where(pos > 0, topic, -1)
    lagged = np.where(pos >= k, x[np.maximum(t - k, 0)], -1)
    context = (pos * (spec.topics + 1) + known_topic + 1) * (big_small.vocab_size + 1) + lagged + 1
    estimate = _conditional_entropy(context, x)
    assert estimate == pytest.approx(big_small.stats["bayes_floor"], abs=0.01)
    assert pos.max() == n


def test_unigram_exact_matches_empirical(big_small):
    stats = big_small.stats
    counts = np.bincount(big_small.train.tokens[1:], minlength=big_small.vocab_size)
    assert _h(counts / counts.sum()) == pytest.approx(stats["unigram_entropy"], abs=1e-9)
    assert stats["unigram_entropy"] == pytest.approx(stats["unigram_entropy_exact"], abs=0.01)


@pytest.mark.parametrize("name", sorted(SYNTHETIC_PRESETS))
def test_floor_below_unigram_below_ln_vocab(name):
    corpus = make_synthetic(name, tokens=20_000)
    s = corpus.stats
    assert 0 < s["bayes_floor"] < s["unigram_entropy_exact"] < s["ln_vocab"]
    assert s["ln_vocab"] == pytest.approx(math.log(corpus.vocab_size))
    assert s["vocab_size"] == corpus.vocab_size
    assert s["process"]["copy_prob"] == SYNTHETIC_PRESETS[name].copy_prob
    assert s["oov_rate"]["valid"] == 0.0
    json.dumps(s)


def test_topics_only_floor_has_no_copy_term():
    spec = SYNTHETIC_PRESETS["topics-only"]
    assert spec.copy_prob == 0.0
    n, K = spec.doc_len, spec.topics
    expected = (math.log(K) + n * _h(_q(spec))) / (n + 1)
    floor = make_synthetic("topics-only", tokens=1_000).stats["bayes_floor"]
    assert floor == pytest.approx(expected, rel=1e-12)


def test_copy_only_unigram_exact_by_hand():
    spec = SYNTHETIC_PRESETS["copy-only"]
    assert spec.topics == 1
    n = spec.doc_len
    probs = np.concatenate([[1 / (n + 1)], n / (n + 1) * _q(spec)])
    corpus = make_synthetic("copy-only", tokens=1_000)
    assert corpus.stats["unigram_entropy_exact"] == pytest.approx(_h(probs), rel=1e-12)


def test_copy_rate_matches_p_plus_collisions(big_small):
    spec = SYNTHETIC_PRESETS["topic-copy-small"]
    n, k, p = spec.doc_len, spec.copy_lag, spec.copy_prob
    docs = big_small.train.tokens.reshape(-1, n + 1)[:, :n]
    same = docs[:, k:] == docs[:, :-k]
    expected = p + (1 - p) * float((_q(spec) ** 2).sum())
    assert same.mean() == pytest.approx(expected, abs=0.01)
    # Before position k nothing is copied: only chance collisions with earlier words.
    assert k > 1
    assert (docs[:, 1:k] == docs[:, :1]).mean() == pytest.approx(float((_q(spec) ** 2).sum()), abs=0.01)


def test_unknown_preset_lists_names():
    with pytest.raises(CorpusError) as info:
        make_synthetic("nope")
    msg = str(info.value)
    assert "\n" not in msg and "nope" in msg
    for name in SYNTHETIC_PRESETS:
        assert name in msg


@pytest.mark.parametrize("tokens", [0, -5, 2.5, True])
def test_bad_token_count_raises(tokens):
    with pytest.raises(CorpusError) as info:
        make_synthetic("topic-copy-small", tokens=tokens)
    assert "\n" not in str(info.value) and "tokens" in str(info.value)


def test_one_million_tokens():
    corpus = make_synthetic("topic-copy", tokens=1_000_000, seed=2)
    assert len(corpus.train) >= 1_000_000
    assert corpus.train.tokens.dtype == np.int32
    assert corpus.stats["tokens"]["train"] == len(corpus.train)
