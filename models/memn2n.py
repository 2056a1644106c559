"""End-To-End Memory Network language model (Sukhbaatar et al. 2015, arXiv 1503.08895).

One Keras 3 model covers both the paper's language model (section 5) and the model
posted in the question this project was built around; every place where the two
differ is a named, typed field of :class:`MemN2NConfig`, so any single choice can be
switched on its own. Intermediate tensors (per-hop scores and attention, the
embedding and temporal-encoding parts of each memory, the H term and the read-out
of each hop) stay reachable through ``model(x, return_internals=True)``.

Shapes: ``B`` batch, ``M`` memory slots, ``D`` embedding size, ``V`` vocabulary.
The input is a window of the ``M`` most recent token ids, oldest first and the
current word last; id 0 is padding.

This package knows nothing about diagnosis: it only builds models.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from .config import MemN2NConfig

__all__ = ["MemN2N", "MemN2NConfig", "build_memn2n", "initializer", "token_loss"]


# The hops' two contractions, with the gradients written out. Autodiff of an einsum
# differentiates "bd,bmd->bm" into "bm,bd->bmd" for the memories: an outer product
# per example that TensorFlow runs as B matrix products of inner size one (B tiny
# GEMMs: half of a default-study step). Each entry of that gradient is one product,
# so the broadcast multiply below gives the same numbers bit for bit, at the cost of
# an elementwise op; the other gradient is the einsum autodiff writes.
@ops.custom_gradient
def match_scores(u, m):
    """``einsum("bd,bmd->bm", u, m)``: each memory's match with the state (B, M)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return ops.einsum("bm,bmd->bd", upstream, m), upstream[:, :, None] * u[:, None, :]

    return ops.einsum("bd,bmd->bm", u, m), grad


@ops.custom_gradient
def read_out(attention, c):
    """``einsum("bm,bmd->bd", attention, c)``: the attention-weighted output memories (B, D)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return ops.einsum("bd,bmd->bm", upstream, c), attention[:, :, None] * upstream[:, None, :]

    return ops.einsum("bm,bmd->bd", attention, c), grad


def initializer(spec: float | str, seed: int | None = None) -> keras.initializers.Initializer:
    """Turns an init spec into a Keras initializer.

    Args:
        spec: a float is the std of N(0, std) (the paper's 0.05); a string is any
            Keras initializer name ("ones", "uniform", "glorot_uniform", ...).
            Keras' "uniform" is U(-0.05, 0.05).
        seed: optional seed for random initializers.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return keras.initializers.RandomNormal(mean=0.0, stddev=float(spec), seed=seed)
    init = keras.initializers.get(spec)
    if seed is not None and hasattr(init, "seed"):
        init = init.__class__(**{**init.get_config(), "seed": seed})
    return init


def sinusoidal_encoding(length: int, dim: int):
    """The fixed encoding of Vaswani et al. (2017), section 3.5: (length, dim)."""
    pos = ops.arange(length, dtype="float32")[:, None]  # (M, 1)
    i = ops.arange(dim, dtype="float32")[None, :]  # (1, D)
    angle = pos / ops.power(10000.0, (2.0 * ops.floor(i / 2.0)) / float(dim))
    even = ops.cast(ops.equal(ops.mod(ops.arange(dim), 2), 0), "float32")[None, :]
    return even * ops.sin(angle) + (1.0 - even) * ops.cos(angle)  # (M, D)


class TemporalEncoding(keras.layers.Layer):
    """A per-slot vector added to every memory: T_A or T_C of the paper (section 4.1).

    ``learned`` is a trainable (M, D) weight (the question's ``Added_Weights``);
    ``sinusoidal`` is the fixed encoding of Vaswani et al.
    """

    def __init__(self, memory_size: int, dim: int, kind: str, init: float | str, **kwargs):
        super().__init__(**kwargs)
        self.memory_size, self.dim, self.kind, self.init = memory_size, dim, kind, init

    def build(self, input_shape=None):
        if self.kind == "learned":
            self.table = self.add_weight(
                name="table", shape=(self.memory_size, self.dim), initializer=initializer(self.init)
            )
        self.built = True

    def encoding(self):
        """The (M, D) table, learned or fixed."""
        if self.kind == "learned":
            return ops.convert_to_tensor(self.table)  # a read now, not the variable (read later)
        return sinusoidal_encoding(self.memory_size, self.dim)

    def get_config(self):
        return {**super().get_config(), "memory_size": self.memory_size, "dim": self.dim,
                "kind": self.kind, "init": self.init}


class MemoryEncoder(keras.layers.Layer):
    """Embeds a window into memories: word embedding plus temporal encoding.

    Returns both parts separately so their balance can be measured; the memory used
    by the hop is their sum.
    """

    def __init__(self, config: MemN2NConfig, **kwargs):
        super().__init__(**kwargs)
        self.cfg = config
        self.embedding = keras.layers.Embedding(
            config.vocab_size, config.embed_dim,
            embeddings_initializer=initializer(config.embedding_init), name="embedding",
        )
        self.temporal = (
            None if config.temporal == "none"
            else TemporalEncoding(config.memory_size, config.embed_dim, config.temporal,
                                  config.temporal_init, name="temporal")
        )

    def build(self, input_shape):
        self.embedding.build(input_shape)
        if self.temporal is not None:
            self.temporal.build()
        self.built = True

    def call(self, windows, keep):
        """Args: windows (B, M) int; keep (B, M, 1) float, 0 on slots to blank.

        Returns (word, temporal, memory): (B, M, D), (M, D) or None, (B, M, D).
        """
        word = self.embedding(windows)  # (B, M, D)
        if self.temporal is None:
            return word, None, word * keep if keep is not None else word
        table = self.temporal.encoding()  # (M, D)
        memory = word + table[None]
        if keep is not None:
            memory = memory * keep
        return word, table, memory


class MemN2N(keras.Model):
    """The MemN2N language model, configured by a :class:`MemN2NConfig`.

    ``call(windows)`` returns the output layer's activations (logits for
    ``output="softmax"``, ReLU activations for ``output="relu"``), (B, V).
    ``call(windows, return_internals=True)`` returns ``(outputs, internals)``;
    internals is a dict of per-hop lists (``scores``, ``attention``, ``h_term``,
    ``readout``, ``state``) and per-encoder tensors (``encoders``: one dict per
    distinct (A, C) pair with ``a_name``, ``c_name``, ``a_word``, ``a_temporal``, ``c_word``,
    ``c_temporal``), plus ``pad_mask`` (B, M) bool.
    """

    def __init__(self, config: MemN2NConfig | dict, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = MemN2NConfig(**config)
        config.validate()
        self.cfg = cfg = config
        K = cfg.hops
        # Which embedding module each hop reads for its A (keys) and C (values):
        # layer-wise tying shares one pair across hops (the paper's LM and the
        # question); adjacent tying uses A^{k+1} = C^k; untied has 2K modules.
        if cfg.tying == "layerwise":
            self._a_index, self._c_index = [0] * K, [1] * K
        elif cfg.tying == "adjacent":
            self._a_index, self._c_index = list(range(K)), list(range(1, K + 1))
        else:  # untied
            self._a_index, self._c_index = list(range(0, 2 * K, 2)), list(range(1, 2 * K, 2))
        self.encoders = [MemoryEncoder(cfg, name=name) for name in _encoder_names(cfg.tying, K)]
        # H is shared by all hops unless the model is untied (then one per hop).
        n_h = K if cfg.tying == "untied" else 1
        if cfg.h_wiring == "state":
            # The paper: u^{k+1} = H u^k + o^k, H a D x D linear map without bias.
            self.h_layers = [keras.layers.Dense(cfg.embed_dim, use_bias=False,
                                                kernel_initializer=initializer(cfg.init_std),
                                                name=f"H_{i}") for i in range(n_h)]
        else:
            # As posted: H is a Dense(D) applied to the (B, M) match scores.
            self.h_layers = [keras.layers.Dense(cfg.embed_dim, use_bias=True,
                                                kernel_initializer=initializer(cfg.init_std),
                                                name=f"H_{i}") for i in range(n_h)]
        self._h_index = list(range(K)) if n_h == K else [0] * K
        drop_mem = cfg.dropout in ("memories", "both")
        drop_hop = cfg.dropout in ("hops", "both")
        self.memory_dropout = [keras.layers.Dropout(cfg.dropout_rate, name=f"drop_mem_{k}")
                               for k in range(K)] if drop_mem else None
        self.hop_dropout = [keras.layers.Dropout(cfg.dropout_rate, name=f"drop_hop_{k}")
                            for k in range(K)] if drop_hop else None
        if cfg.output == "softmax":
            # The paper: a linear map W to logits, trained with softmax cross-entropy.
            self.out = keras.layers.Dense(cfg.vocab_size, use_bias=False,
                                          kernel_initializer=initializer(cfg.init_std), name="W")
        else:
            # As posted: Dense(V, relu) with bias, fed to categorical cross-entropy.
            self.out = keras.layers.Dense(cfg.vocab_size, activation="relu",
                                          kernel_initializer=initializer(cfg.init_std), name="W")
        n_relu = int(round(cfg.relu_fraction * cfg.embed_dim))
        # The paper's LM passes half the hidden units through a ReLU after each hop;
        # the mask marks the last n_relu units.
        self._relu_units = n_relu
        # Which implementation of the hops runs: "auto" picks the fused kernel where
        # it applies and pays (see _fused), "layered" the hop-by-hop code below,
        # "fused" insists on the kernel. The numbers are the same either way.
        self.hop_kernel = "auto"
        self._init_build()

    def _init_build(self):
        self.build((None, self.cfg.memory_size))

    def build(self, input_shape):
        cfg = self.cfg
        for enc in self.encoders:
            enc.build((None, cfg.memory_size))
        h_in = cfg.embed_dim if cfg.h_wiring == "state" else cfg.memory_size
        for h in self.h_layers:
            h.build((None, h_in))
        self.out.build((None, cfg.embed_dim))
        self.built = True

    def call(self, windows, training=False, return_internals=False):
        cfg = self.cfg
        windows = ops.cast(windows, "int32")
        pad = ops.equal(windows, 0)  # (B, M)
        masked = cfg.padding == "masked"
        keep = ops.cast(ops.logical_not(pad), "float32")[..., None] if masked else None  # (B, M, 1)
        encoded = [enc(windows, keep) for enc in self.encoders]  # each (word, temporal, memory)
        internals: dict[str, Any] = {k: [] for k in ("scores", "attention", "h_term", "readout", "state")}
        if self._fused(training):
            u = self._fused_hops(windows, encoded, internals)
        else:
            u = self._layered_hops(pad, encoded, internals, training)
        outputs = self.out(u)  # (B, V)
        if not return_internals:
            return outputs
        internals["pad_mask"] = pad
        internals["encoders"] = [
            {"a_name": self.encoders[self._a_index[k]].name, "c_name": self.encoders[self._c_index[k]].name,
             "a_word": encoded[self._a_index[k]][0], "a_temporal": encoded[self._a_index[k]][1],
             "c_word": encoded[self._c_index[k]][0], "c_temporal": encoded[self._c_index[k]][1]}
            for k in self._distinct_hops()
        ]
        return outputs, internals

    def _layered_hops(self, pad, encoded, internals, training):
        """The hops one after another over the whole batch; fills ``internals``, returns the final state."""
        cfg = self.cfg
        masked = cfg.padding == "masked"
        u = ops.full((ops.shape(pad)[0], cfg.embed_dim), cfg.query_value, dtype="float32")  # (B, D)
        if self._relu_units:
            relu_mask = ops.concatenate([
                ops.zeros((cfg.embed_dim - self._relu_units,)), ops.ones((self._relu_units,))])
        for k in range(cfg.hops):
            m = encoded[self._a_index[k]][2]  # (B, M, D)
            c = encoded[self._c_index[k]][2]  # (B, M, D)
            if self.memory_dropout is not None:
                m = self.memory_dropout[k](m, training=training)
            scores = match_scores(u, m)  # (B, M)
            logits = ops.where(pad, -1e9, scores) if masked else scores
            attention = ops.softmax(logits, axis=-1)  # (B, M)
            readout = read_out(attention, c)  # (B, D)
            h = self.h_layers[self._h_index[k]]
            if cfg.h_wiring == "state":
                h_term = h(u)  # (B, D)
            else:
                # H applied to the match scores (pre-softmax), as posted. Masked
                # slots enter as 0 rather than -1e9.
                h_term = h(ops.where(pad, 0.0, scores) if masked else scores)  # (B, D)
            u = h_term + readout
            if self._relu_units:
                u = relu_mask * ops.relu(u) + (1.0 - relu_mask) * u
            if self.hop_dropout is not None:
                u = self.hop_dropout[k](u, training=training)
            for key, val in (("scores", scores), ("attention", attention), ("h_term", h_term),
                             ("readout", readout), ("state", u)):
                internals[key].append(val)
        return u

    def _fused(self, training) -> bool:
        """Whether this call runs the hops as one fused kernel (:mod:`diagnose.models.fused_hops`).

        The kernel covers layer-wise tying without dropout in the call (so every hop
        reads the same memories) on the TensorFlow backend. "auto" uses it when a
        batch's keys and values (2 B M D floats) exceed 4 MiB: below that they stay
        in cache hop to hop anyway and the loop over tiles only adds work.
        """
        cfg = self.cfg
        applies = (keras.backend.backend() == "tensorflow" and cfg.tying == "layerwise"
                   and (cfg.dropout == "none" or not training))
        if self.hop_kernel == "layered":
            return False
        if self.hop_kernel == "fused":
            if not applies:
                raise ValueError("hop_kernel='fused' needs the TensorFlow backend, layer-wise tying and no dropout "
                                 "while training; use 'auto' or 'layered'")
            return True
        if self.hop_kernel != "auto":
            raise ValueError(f"hop_kernel={self.hop_kernel!r} is not one of auto, fused, layered")
        return applies and 2 * cfg.batch_size * cfg.memory_size * cfg.embed_dim * 4 > 4 * 2**20

    def _fused_hops(self, windows, encoded, internals):
        """Fills ``internals``' per-hop lists from the fused kernel; returns the final state."""
        from .fused_hops import fused_hops, tile_size

        cfg = self.cfg
        a_enc, c_enc = self.encoders[self._a_index[0]], self.encoders[self._c_index[0]]
        h = self.h_layers[0]
        per_hop = fused_hops(
            ops.reshape(windows, (-1, cfg.memory_size)), ops.convert_to_tensor(a_enc.embedding.embeddings),
            ops.convert_to_tensor(c_enc.embedding.embeddings),
            encoded[self._a_index[0]][1], encoded[self._c_index[0]][1], ops.convert_to_tensor(h.kernel),
            ops.convert_to_tensor(h.bias) if h.use_bias else None,
            hops=cfg.hops, masked=cfg.padding == "masked", h_wiring=cfg.h_wiring, relu_units=self._relu_units,
            query_value=cfg.query_value, tile=tile_size(cfg.memory_size, cfg.embed_dim),
            # Dense table gradients where the table has no more rows than a batch
            # looks up (the paper's PTB model: 10,001 rows, 12,800 lookups).
            dense_grads=cfg.vocab_size <= cfg.batch_size * cfg.memory_size)
        for key, value in per_hop.items():  # (B, K, .) -> K tensors (B, .)
            internals[key] = ops.unstack(ops.transpose(value, (1, 0, 2)), num=cfg.hops, axis=0)
        return per_hop["state"][:, -1]

    def _distinct_hops(self) -> list[int]:
        """Hops whose (A, C) pair differs from every earlier hop's."""
        seen, hops = set(), []
        for k in range(self.cfg.hops):
            pair = (self._a_index[k], self._c_index[k])
            if pair not in seen:
                seen.add(pair)
                hops.append(k)
        return hops

    def get_config(self):
        return {"config": dataclasses.asdict(self.cfg), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(config["config"], name=config.get("name"))


keras.saving.register_keras_serializable(package="models")(MemN2N)
keras.saving.register_keras_serializable(package="models")(MemoryEncoder)
keras.saving.register_keras_serializable(package="models")(TemporalEncoding)


def _encoder_names(tying: str, hops: int) -> list[str]:
    """Readable weight paths: A and C (layer-wise), E_0..E_K (adjacent), A_1, C_1, ... (untied)."""
    if tying == "layerwise":
        return ["A", "C"]
    if tying == "adjacent":
        return [f"E_{i}" for i in range(hops + 1)]
    return [f"{p}_{k}" for k in range(1, hops + 1) for p in ("A", "C")]


def build_memn2n(config: MemN2NConfig) -> MemN2N:
    """Builds (and creates the weights of) a MemN2N for ``config``."""
    return MemN2N(config, name="memn2n")


def token_loss(config: MemN2NConfig, targets, outputs):
    """Per-example cross-entropy (nats) of the model's outputs against next-token ids.

    ``softmax`` output: softmax cross-entropy on the logits. ``relu`` output: Keras'
    ``categorical_crossentropy`` on one-hot targets, exactly as the question
    compiles it: the ReLU activations are divided by their sum and clipped to
    [1e-7, 1 - 1e-7] before the log (an all-zero row gives NaN, as in Keras).
    """
    if config.output == "softmax":
        return keras.ops.sparse_categorical_crossentropy(targets, outputs, from_logits=True)
    onehot = keras.ops.one_hot(targets, config.vocab_size)
    return keras.losses.categorical_crossentropy(onehot, outputs)
