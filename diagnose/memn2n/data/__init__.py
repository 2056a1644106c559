"""Corpora for the diagnosis runs: PTB-format text and the embedded synthetic one.

numpy only, no TensorFlow, so importing the data layer is cheap.
"""

from diagnose.memn2n.data.corpus import EOS, PAD, UNK, Corpus, Split, windows
from diagnose.memn2n.data.synthetic import SYNTHETIC_PRESETS, SyntheticSpec, make_synthetic
from diagnose.memn2n.data.text import load_text_corpus

__all__ = [
    "EOS",
    "PAD",
    "UNK",
    "Corpus",
    "Split",
    "SYNTHETIC_PRESETS",
    "SyntheticSpec",
    "load_text_corpus",
    "make_synthetic",
    "windows",
]
