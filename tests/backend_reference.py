"""A reference run for the cross-backend test: one small model, weights set from numpy, two logged steps.

Run as ``KERAS_BACKEND=NAME python tests/backend_reference.py OUT.json``: writes the
backend's name and the rows of metrics.csv (every step is logged and measured).
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


def reference_run(optimizer: str) -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh", name="hidden"),
                              keras.layers.Dense(3, name="out")], name="reference")
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    opt = keras.optimizers.SGD(0.1) if optimizer == "sgd" else keras.optimizers.Adam(0.01)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    run = tempfile.mkdtemp() + "/run"
    diagnose.instrument(model).fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                                   callbacks=[diagnose.Monitor(run, log_every=1, tensorboard=False)])
    return runrecord.read_metrics(run).to_dict("records")


if __name__ == "__main__":
    out = {"backend": keras.backend.backend(),
           "runs": {name: reference_run(name) for name in ("sgd", "adam")}}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
