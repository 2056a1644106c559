"""A reference run for the cross-backend test: one small model, weights set from numpy, two logged steps.

Run as ``KERAS_BACKEND=NAME python tests/backend_reference.py OUT.json``: writes the
backend's name and the rows of metrics.csv (every step is logged and measured), of an MLP under SGD and
Adam, and of a small attention model (``attention``: SGD) for the attention and branch-balance columns.
"""

import json
import sys
import tempfile

import numpy as np

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


def reference_run(optimizer: str) -> list[dict]:
    rng = np.random.default_rng(0)
    if optimizer == "attention":
        x = rng.integers(0, 12, size=(64, 6)).astype("int32")
        y = ((x[:, 0] > 5).astype("int32") + (x[:, 5] > 8)).astype("int32")
        model = attention_model()
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
    return runrecord.read_metrics(run).to_dict("records")


if __name__ == "__main__":
    out = {"backend": keras.backend.backend(),
           "runs": {name: reference_run(name) for name in ("sgd", "adam", "attention")}}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
