"""The MemN2N configuration: one typed, commented field per design choice.

Two presets matter: ``paper`` (Sukhbaatar et al. 2015, section 5, the Penn Treebank
language model) and ``as-posted`` (the Keras model of the question this project
grew from, exactly as posted). Every field on which they differ is a factor that can
be switched alone.

The "recipe" fields (loss reduction, clipping, learning rate, batch) are part of the
configuration because the question's model differs from the paper there too; the
model itself ignores them and the training loop reads them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Literal

__all__ = ["MemN2NConfig", "PRESETS", "preset", "apply_overrides", "field_choices"]

Output = Literal["softmax", "relu"]
Temporal = Literal["none", "learned", "sinusoidal"]
Padding = Literal["masked", "encoded"]
Dropout = Literal["none", "memories", "hops", "both"]
Tying = Literal["layerwise", "adjacent", "untied"]
HWiring = Literal["state", "scores"]
Reduction = Literal["sum", "mean"]
Clip = Literal["global", "per_tensor", "none"]

# Hops: the paper uses 1 to 7; each hop is traced and compiled into the step, so 100
# hops of a tiny model take ~50 s to compile on two cores and 100,000 would take days.
MAX_HOPS = 100


@dataclass(frozen=True)
class MemN2NConfig:
    """A MemN2N language model and its training recipe. Defaults are the paper's."""

    # --- sizes ---------------------------------------------------------------
    vocab_size: int = 10_000  # PTB's 10k words; the training path sets it from the corpus
    memory_size: int = 100  # memory slots: the previous 100 words, current word included (paper, sec. 5)
    embed_dim: int = 150  # D, the paper's PTB setting
    hops: int = 6  # K; the question's loop runs NUM_LAYERS - 1 of its intended NUM_LAYERS

    # --- architecture factors --------------------------------------------------
    output: Output = "softmax"  # "softmax": linear logits + softmax CE (paper); "relu": Dense(V, relu) + categorical CE (posted)
    temporal: Temporal = "learned"  # T_A/T_C: none | learned (sec. 4.1) | sinusoidal (Vaswani et al. 2017)
    temporal_init: float | str = 0.05  # learned T init: a float is N(0, std); a string a Keras initializer ("uniform" = U(-.05, .05), "ones")
    padding: Padding = "masked"  # padded slots: "masked" hold nothing and get no attention (paper); "encoded" embed the pad id, add T and attend (posted)
    dropout: Dropout = "none"  # where dropout acts: none (paper LM) | on memories m_i | on each hop's output | both (posted)
    dropout_rate: float = 0.1  # the question does not give DROPOUT_R; 0.1 is a common choice
    tying: Tying = "layerwise"  # layerwise: one A, C, T_A, T_C, H for all hops (paper LM, posted); adjacent: A^{k+1} = C^k; untied
    h_wiring: HWiring = "state"  # "state": u^{k+1} = H u^k + o^k (paper); "scores": H applied to the pre-softmax match scores (posted)
    relu_fraction: float = 0.5  # share of hidden units passed through a ReLU after each hop (paper LM: half; posted: none)
    query_value: float = 0.1  # the LM's query is a constant vector of 0.1 (paper, sec. 5)
    init_std: float = 0.05  # N(0, 0.05) for H and the output map W (paper; the question uses it for its Dense layers)
    embedding_init: float | str = 0.05  # A, C: N(0, 0.05) (paper); Keras' Embedding default "uniform" in the question

    # --- training recipe -----------------------------------------------------
    loss_reduction: Reduction = "sum"  # "sum" over the batch (paper and its Torch/TF code) | "mean" (Keras default, posted)
    clip: Clip = "global"  # rescale gradients whose norm exceeds clip_norm: over all variables (paper) | per tensor (Keras clipnorm, posted)
    clip_norm: float = 50.0  # the paper's and the question's threshold
    learning_rate: float = 0.01  # SGD, the paper's and the question's rate
    lr_anneal: float = 1.5  # divide the rate by this when validation loss stops falling (paper); 1 disables
    batch_size: int = 128  # the paper's and the question's batch

    def validate(self) -> None:
        """Raises ValueError naming the field and the valid range for an impossible value."""
        for name, choices in field_choices().items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(choices)}")
        for name in ("vocab_size", "memory_size", "embed_dim", "hops", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.hops > MAX_HOPS:
            raise ValueError(f"hops={self.hops} is more than {MAX_HOPS} (the paper uses 1 to 7; each hop is compiled "
                             "into the step, and 100 take ~50 s to compile): give fewer hops")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (pad plus two words), got {self.vocab_size}")
        for name in ("dropout_rate", "relu_fraction", "query_value", "init_std", "clip_norm", "learning_rate",
                     "lr_anneal"):
            value = getattr(self, name)
            # inf and nan pass a comparison such as `> 0` (or fail it silently): refuse them by name.
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if not 0.0 <= self.relu_fraction <= 1.0:
            raise ValueError(f"relu_fraction must be in [0, 1], got {self.relu_fraction}")
        for name in ("clip_norm", "learning_rate", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr_anneal < 1.0:
            raise ValueError(f"lr_anneal must be >= 1 (1 disables annealing), got {self.lr_anneal}")
        for name in ("temporal_init", "embedding_init"):
            _check_init(name, getattr(self, name))


PRESETS: dict[str, MemN2NConfig] = {
    # Section 5 of the paper: 150 dims, 6 hops, memory 100, layer-wise tying,
    # learned temporal encoding at N(0, 0.05), ReLU on half the units, softmax
    # output, summed loss, gradients clipped to global norm 50, SGD 0.01 / 1.5.
    "paper": MemN2NConfig(),
    # The question's code exactly. Sizes it leaves open follow the paper, so
    # NUM_LAYERS = 6 and its loop runs 5 hops. Its Added_Weights initializer is not
    # shown; the Keras custom-layer template of that era used 'uniform', i.e.
    # U(-0.05, 0.05), and we use that (it stays a factor: temporal_init).
    "as-posted": MemN2NConfig(
        hops=5,
        output="relu",
        temporal="learned",
        temporal_init="uniform",
        padding="encoded",
        dropout="both",
        tying="layerwise",
        h_wiring="scores",
        relu_fraction=0.0,
        embedding_init="uniform",
        loss_reduction="mean",
        clip="per_tensor",
    ),
}


def preset(name: str) -> MemN2NConfig:
    """Returns the named preset; ValueError lists the names for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def field_choices() -> dict[str, tuple[str, ...]]:
    """The fields whose values come from a fixed set, with that set."""
    hints = typing.get_type_hints(MemN2NConfig)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(MemN2NConfig)
            if typing.get_origin(hints[f.name]) is Literal}


def apply_overrides(config: MemN2NConfig, overrides: dict[str, object]) -> MemN2NConfig:
    """Returns ``config`` with ``overrides`` applied and validated.

    Values may be strings (from ``--set KEY=VALUE``) and are parsed to the field's
    type. Raises ValueError naming the key and listing valid keys or values.
    """
    hints = typing.get_type_hints(MemN2NConfig)
    names = [f.name for f in dataclasses.fields(MemN2NConfig)]
    parsed = {}
    for key, value in overrides.items():
        if key not in hints:
            raise ValueError(f"unknown setting {key!r}; valid settings: {', '.join(names)}")
        parsed[key] = _parse(key, hints[key], value)
    new = dataclasses.replace(config, **parsed)
    new.validate()
    return new


def _parse(key: str, hint, value):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key}={value!r} is not valid; choose one of {', '.join(args)}")
        return value
    if origin in (typing.Union, types.UnionType):  # float | str: a std or an initializer name
        try:
            number = float(value)
        except (TypeError, ValueError):
            _check_init(key, value)
            return str(value)
        _check_init(key, number)
        return number
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}={value!r} is not a boolean; use true or false")
    if isinstance(value, bool) and hint in (int, float):
        raise ValueError(f"{key}={value!r} is a boolean; give a number")
    try:
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not a valid {hint.__name__}") from None


# Keras initializer names accepted for temporal_init / embedding_init. A fixed list
# (checked against keras.initializers in the tests) so that validating a config
# does not import Keras.
INITIALIZERS = ("zeros", "ones", "uniform", "random_uniform", "normal", "random_normal", "truncated_normal",
                "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
                "orthogonal", "variance_scaling")


def _check_init(key: str, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 < value < float("inf"):
            raise ValueError(f"{key}={value} must be a positive, finite std or a Keras initializer name")
        return
    if value not in INITIALIZERS:
        raise ValueError(
            f"{key}={value!r} is neither a std nor a Keras initializer name "
            f"(try 0.05 or one of {', '.join(INITIALIZERS)})"
        )
