"""Loads the corpus a :class:`~diagnose.memn2n.config.DataConfig` names."""

from __future__ import annotations

from diagnose.memn2n.data.corpus import Corpus


def load_corpus(data, memory_size: int) -> Corpus:
    """The text corpus at ``data.corpus``, or the synthetic one when it is None.

    Raises:
        CorpusError: the corpus cannot be used (missing, empty, binary, too short...).
    """
    if data.corpus is not None:
        from diagnose.memn2n.data.text import load_text_corpus

        return load_text_corpus(data.corpus, max_vocab=data.max_vocab, min_count=data.min_count,
                                valid_fraction=data.valid_fraction, memory_size=memory_size)
    from diagnose.memn2n.data.synthetic import make_synthetic

    return make_synthetic(data.synthetic, tokens=data.synthetic_tokens, seed=data.corpus_seed)
