"""A reference run for the cross-backend test: one small model, weights set from numpy, two logged steps.

Run as ``KERAS_BACKEND=NAME python tests/backend_reference.py OUT.json``: writes the
backend's name and the rows of metrics.csv (every step is logged and measured), of an MLP under SGD and
Adam, of a small attention model (``attention``: SGD) for the attention and branch-balance columns, and of
two stacked attention layers of one shape (``stacked``: SGD), and the rows of each run's attention.csv (the
winning-slot counts, written where every attention site has the same shape: the stacked run's).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402


class AddPosition(keras.layers.Layer):
    """Adds a learned (steps, features) table to its input: a position embedding the taps find by its weight."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), name="table")

    def call(self, x):
        return x + self.table


def attention_model():
    """Tokens (id 0 as padding), a position table added, a causal MultiHeadAttention with a residual Add, and
    a Softmax over the steps (axis 1) pooling them: every kind of site the taps find."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    h = AddPosition(name="pos_table")(keras.layers.Embedding(12, 8, name="embed")(tokens))
    # (no biases before a softmax: their true gradient is 0, what the backends compute is rounding noise)
    attended = keras.layers.MultiHeadAttention(2, 4, use_bias=False, name="mha")(h, h, use_causal_mask=True)
    h = keras.layers.Add(name="residual")([h, attended])
    scores = keras.layers.Dense(1, use_bias=False, name="score")(h)  # (B, 6, 1)
    weights = keras.layers.Softmax(axis=1, name="pool")(scores)
    pooled = keras.layers.Flatten()(keras.layers.Dot(axes=1)([weights, h]))
    return keras.Model(tokens, keras.layers.Dense(3, name="out")(pooled), name="attention_reference")


def stacked_attention_model():
    """Tokens, a position table added, two MultiHeadAttention layers of one shape (the first causal) with
    residual Adds, averaged over the steps: two attention sites of one shape, whose winning slots go to
    attention.csv (hop1, hop2)."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    h = AddPosition(name="pos_table")(keras.layers.Embedding(12, 8, name="embed")(tokens))
    for k, causal in enumerate((True, False), start=1):
        attended = keras.layers.MultiHeadAttention(2, 4, use_bias=False, name=f"mha{k}")(h, h, use_causal_mask=causal)
        h = keras.layers.Add(name=f"residual{k}")([h, attended])
    pooled = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(tokens, keras.layers.Dense(3, name="out")(pooled), name="stacked_reference")


def reference_run(optimizer: str) -> tuple[list[dict], list[dict]]:
    """The rows of metrics.csv and of attention.csv (none where the run writes no attention.csv)."""
    rng = np.random.default_rng(0)
    if optimizer in ("attention", "stacked"):
        x = rng.integers(0, 12, size=(64, 6)).astype("int32")
        y = ((x[:, 0] > 5).astype("int32") + (x[:, 5] > 8)).astype("int32")
        model = attention_model() if optimizer == "attention" else stacked_attention_model()
    else:
        x = rng.normal(size=(64, 5)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh", name="hidden"),
                                  keras.layers.Dense(3, name="out")], name="reference")
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    # (the attention model under SGD: TensorFlow's Adam moves an embedding by its sparse gradient otherwise)
    opt = keras.optimizers.Adam(0.01) if optimizer == "adam" else keras.optimizers.SGD(0.1)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    run = tempfile.mkdtemp() + "/run"
    diagnose.instrument(model).fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                                   callbacks=[diagnose.Monitor(run, log_every=1, tensorboard=False)])
    attention = Path(run) / runrecord.ATTENTION
    counts = pd.read_csv(attention).to_dict("records") if attention.exists() else []
    return runrecord.read_metrics(run).to_dict("records"), counts


if __name__ == "__main__":
    runs = {name: reference_run(name) for name in ("sgd", "adam", "attention", "stacked")}
    out = {"backend": keras.backend.backend(), "runs": {name: rows for name, (rows, _) in runs.items()},
           "attention": {name: counts for name, (_, counts) in runs.items()}}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
