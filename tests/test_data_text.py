"""Tests of the PTB-format loader and of memory windows, on tiny hand-made files."""

import json
import math

import numpy as np
import pytest

from diagnose.memn2n.data import EOS, PAD, UNK, load_text_corpus, windows
from diagnose.memn2n.data.corpus import Split
from diagnose.errors import CorpusError

# Training counts: a 3, b 2, <eos> 2, c 1, d 1 -> by (-count, token): a, <eos>, b, c, d
# ("<" sorts before letters, so <eos> wins the tie with b).
TRAIN = "b a c a\n\n   \nd a b\n"
VALID = "a e b\n"
TEST = "<unk> d\n"
VOCAB = (PAD, UNK, "a", EOS, "b", "c", "d")


def _write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ptb_dir(tmp_path):
    d = tmp_path / "mini"
    d.mkdir()
    _write(d / "ptb.train.txt", TRAIN)
    _write(d / "ptb.valid.txt", VALID)
    _write(d / "ptb.test.txt", TEST)
    _write(d / "README.md", "not a split")
    return d


def test_directory_vocab_ids_eos_and_unk(ptb_dir):
    corpus = load_text_corpus(str(ptb_dir))
    assert corpus.vocab == VOCAB
    assert corpus.name == "ptb" and corpus.source == str(ptb_dir)
    ids = {w: i for i, w in enumerate(VOCAB)}
    expected_train = [ids[w] for w in "b a c a <eos> d a b <eos>".split()]
    np.testing.assert_array_equal(corpus.train.tokens, expected_train)
    np.testing.assert_array_equal(corpus.train.line_start, [0] * 5 + [5] * 4)
    # "e" is unseen in training -> UNK; a literal <unk> is the UNK id.
    np.testing.assert_array_equal(corpus.valid.tokens, [ids["a"], 1, ids["b"], ids[EOS]])
    np.testing.assert_array_equal(corpus.test.tokens, [1, ids["d"], ids[EOS]])
    assert corpus.train.tokens.dtype == np.int32 and corpus.train.line_start.dtype == np.int32
    s = corpus.stats
    assert s["tokens"] == {"train": 9, "valid": 4, "test": 3}
    assert s["oov_rate"]["valid"] == pytest.approx(1 / 4)
    assert s["oov_rate"]["test"] == pytest.approx(1 / 3)
    assert s["vocab_size"] == corpus.vocab_size == 7
    assert s["ln_vocab"] == pytest.approx(math.log(7))
    assert s["bayes_floor"] is None and s["unigram_entropy_exact"] is None
    # Targets tokens[1:] = a c a <eos> d a b <eos>: counts 3, 2, 1, 1, 1 of 8.
    p = np.array([3, 2, 1, 1, 1]) / 8
    assert s["unigram_entropy"] == pytest.approx(float(-(p * np.log(p)).sum()))
    assert corpus.num_windows("train") == 8 and corpus.num_windows("test") == 2
    json.dumps(s)


def test_source_stays_relative(ptb_dir, monkeypatch):
    monkeypatch.chdir(ptb_dir.parent)
    assert load_text_corpus("mini").source == "mini"


def test_max_vocab_and_min_count_map_to_unk(ptb_dir):
    small = load_text_corpus(str(ptb_dir), max_vocab=5)
    assert small.vocab == VOCAB[:5]
    # c and d fall out of the vocabulary.
    np.testing.assert_array_equal(small.train.tokens, [4, 2, 1, 2, 3, 1, 2, 4, 3])
    assert small.stats["oov_rate"]["train"] == pytest.approx(2 / 9)
    frequent = load_text_corpus(str(ptb_dir), min_count=2)
    assert frequent.vocab == VOCAB[:5]


def test_eos_kept_even_when_rare(tmp_path):
    f = _write(tmp_path / "long.txt", "a a a b b b c c c\nb a\n")
    corpus = load_text_corpus(str(f), max_vocab=5, valid_fraction=0.5)
    # Train is the first line only: <eos> (count 1) displaces c (count 3).
    assert corpus.vocab == (PAD, UNK, "a", "b", EOS)


def test_single_file_holds_out_tail_lines(tmp_path):
    lines = [f"w{i} x{i % 3} y" for i in range(10)]
    f = _write(tmp_path / "corpus.txt", "\n".join(lines) + "\n")
    corpus = load_text_corpus(str(f), valid_fraction=0.2)
    assert corpus.test is None and corpus.name == "corpus"
    assert corpus.stats["tokens"] == {"train": 32, "valid": 8, "test": None}
    valid_words = [corpus.vocab[i] for i in corpus.valid.tokens]
    assert valid_words == ["<unk>", "x2", "y", EOS, "<unk>", "x0", "y", EOS]
    assert "w7" in corpus.vocab and "w8" not in corpus.vocab
    tiny = load_text_corpus(str(f), valid_fraction=0.01)
    assert tiny.stats["tokens"]["valid"] == 4  # at least one line
    with pytest.raises(CorpusError):
        corpus.num_windows("test")


def _hand_split():
    # Two lines: [10 11 12 13 2] [14 15 16 2]
    tokens = np.array([10, 11, 12, 13, 2, 14, 15, 16, 2], dtype=np.int32)
    return Split(tokens=tokens, line_start=np.array([0] * 5 + [5] * 4, dtype=np.int32))


def test_windows_stream_context():
    win, tgt = windows(_hand_split(), 3, np.array([0, 1, 5, 6, 7]))
    np.testing.assert_array_equal(
        win, [[0, 0, 10], [0, 10, 11], [13, 2, 14], [2, 14, 15], [14, 15, 16]]
    )
    np.testing.assert_array_equal(tgt, [11, 12, 15, 16, 2])
    assert win.dtype == np.int32 and tgt.dtype == np.int32


def test_windows_line_context_restarts_memory():
    win, tgt = windows(_hand_split(), 3, np.array([0, 1, 5, 6, 7, 4]), context="line")
    np.testing.assert_array_equal(
        win, [[0, 0, 10], [0, 10, 11], [0, 0, 14], [0, 14, 15], [14, 15, 16], [12, 13, 2]]
    )
    np.testing.assert_array_equal(tgt, [11, 12, 15, 16, 2, 14])


def test_windows_targets_are_next_tokens(ptb_dir):
    corpus = load_text_corpus(str(ptb_dir))
    t = np.arange(corpus.num_windows("train"))
    win, tgt = windows(corpus.train, 4, t)
    np.testing.assert_array_equal(tgt, corpus.train.tokens[1:])
    np.testing.assert_array_equal(win[:, -1], corpus.train.tokens[:-1])
    assert not np.any(tgt == 0)


@pytest.mark.parametrize(
    "kwargs", [{"positions": [8]}, {"positions": [-1]}, {"context": "doc"}, {"memory_size": 0}]
)
def test_windows_bad_arguments(kwargs):
    args = {"positions": [0], "memory_size": 2, "context": "stream", **kwargs}
    with pytest.raises(CorpusError) as info:
        windows(_hand_split(), args["memory_size"], np.array(args["positions"]), args["context"])
    assert "\n" not in str(info.value)


def _bad_cases(tmp_path):
    """(path to load, name that must appear in the message, load kwargs)."""
    cases = []

    def file_case(name, content, **kw):
        f = tmp_path / name
        _write(f, content, "wb" if isinstance(content, bytes) else "w")
        cases.append((f, name, kw))

    cases.append((tmp_path / "missing.txt", "missing.txt", {}))
    file_case("empty.txt", "")
    file_case("blank.txt", "  \n\t\n\n")
    file_case("binary.txt", b"a b\x00c\nd e\n")
    file_case("latin1.txt", "caf\xe9 au lait\nun deux\n".encode("latin-1"))
    file_case("short.txt", "a b\nc\n", memory_size=3)
    file_case("oneword.txt", "x\nx\nx x\n")
    file_case("oneline.txt", "a b c d\n")
    file_case("tinyvocab.txt", "a b c\na b c\nb a\n", max_vocab=3)

    def dir_case(name, files, **kw):
        d = tmp_path / name
        d.mkdir()
        for fname, content in files.items():
            _write(d / fname, content)
        cases.append((d, name, kw))

    dir_case("notrain", {"ptb.valid.txt": VALID})
    dir_case("novalid", {"ptb.train.txt": TRAIN})
    dir_case("twotrain", {"a.train.txt": TRAIN, "b.train.txt": TRAIN, "ptb.valid.txt": VALID})
    dir_case("shortvalid", {"ptb.train.txt": TRAIN, "ptb.valid.txt": "a\n"}, memory_size=2)
    return cases


def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path):
    cases = _bad_cases(tmp_path)
    assert len(cases) == 13
    for path, name, kwargs in cases:
        with pytest.raises(CorpusError) as info:
            load_text_corpus(str(path), **kwargs)
        msg = str(info.value)
        assert "\n" not in msg, msg
        assert name in msg, (name, msg)


def test_bad_input_messages_say_what_is_wrong(tmp_path):
    expected = {
        "missing.txt": "does not exist",
        "empty.txt": "empty",
        "blank.txt": "empty",
        "binary.txt": "binary",
        "latin1.txt": "0xe9",
        "short.txt": "memory_size",
        "oneword.txt": "one-word vocabulary",
        "twotrain": "a.train.txt, b.train.txt",
        "shortvalid": "validation",
    }
    for path, name, kwargs in _bad_cases(tmp_path):
        if name in expected:
            with pytest.raises(CorpusError, match=expected[name]):
                load_text_corpus(str(path), **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_vocab": 2}, {"min_count": 0}, {"memory_size": 0}, {"valid_fraction": 1.5}]
)
def test_bad_arguments_raise(tmp_path, kwargs):
    f = _write(tmp_path / "ok.txt", "a b c\nb c a\n")
    with pytest.raises(CorpusError):
        load_text_corpus(str(f), **kwargs)
