"""Models of families the test zoo does not hold, trained by plain fit and under instrument + Monitor.

Each model is built and fitted twice with the same seeds: once plainly, once as
``diagnose.instrument(model).fit(..., callbacks=[diagnose.Monitor(run_dir)])``.
Prints, per model, whether History and the final weights are equal (bitwise), the
largest weight difference, and the first finding ``diagnose check`` names on the
record (two epochs of a small model: often 'unexplained' or nothing, which is what
the findings should say of a model that has barely trained). Writes
bench/results/fit_equality.json.

    python bench/fit_equality.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (the checkout first on the import path)
import numpy as np

import diagnose
from diagnose._tf import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.normal(size=(192, 12)).astype("float32")
Y = np.argmax(X[:, :3], 1).astype("int32")
SEQ = RNG.normal(size=(192, 10, 4)).astype("float32")
Y_SEQ = (SEQ[:, :, 0].sum(1) > 0).astype("float32")
TOKENS = RNG.integers(1, 40, size=(192, 8)).astype("int32")
WEIGHTS = RNG.random(192).astype("float32")
IMAGES = RNG.normal(size=(64, 8, 8, 1)).astype("float32")


def bilstm():
    model = keras.Sequential([keras.Input((10, 4)), L.Bidirectional(L.LSTM(6, return_sequences=True)),
                              L.TimeDistributed(L.Dense(3)), L.GlobalMaxPooling1D(), L.Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy", metrics=["auc"])
    return model, (SEQ, Y_SEQ), {}


def siamese():
    a, b = keras.Input((12,)), keras.Input((12,))
    encoder = keras.Sequential([L.Dense(8, activation="tanh"), L.Dense(4)])
    distance = L.Lambda(lambda t: keras.ops.sum(keras.ops.abs(t[0] - t[1]), axis=1, keepdims=True))(
        [encoder(a), encoder(b)])
    model = keras.Model([a, b], L.Dense(1, activation="sigmoid")(distance))
    model.compile("adam", "binary_crossentropy")
    return model, ([X, X[::-1]], (Y == Y[::-1]).astype("float32")), {}


def conv1d_huber_nesterov():
    model = keras.Sequential([keras.Input((10, 4)), L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2),
                              L.Flatten(), L.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), keras.losses.Huber())
    return model, (SEQ, SEQ[:, :, 1].mean(1)), {}


def selu_label_smoothing_class_weight():
    model = keras.Sequential([keras.Input((12,)), L.Dense(16, activation="selu", kernel_initializer="lecun_normal"),
                              L.AlphaDropout(0.1), L.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.AdamW(0.01, weight_decay=0.01),
                  keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["categorical_accuracy"])
    return model, (X, keras.utils.to_categorical(Y, 3)), {"class_weight": {0: 1.0, 1: 2.0, 2: 0.5}}


class Batches(keras.utils.PyDataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return X[i * 32:(i + 1) * 32], Y[i * 32:(i + 1) * 32]


def pydataset_adagrad():
    model = keras.Sequential([keras.Input((12,)), L.Dense(8, activation="relu"), L.Dense(3)])
    model.compile(keras.optimizers.Adagrad(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_top_k_categorical_accuracy"])
    return model, (Batches(),), {"batch_size": None}


def gru_sample_weight():
    model = keras.Sequential([keras.Input((8,), dtype="int32"), L.Embedding(40, 8), L.GRU(8), L.Dense(3)])
    model.compile(keras.optimizers.Nadam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, (TOKENS, Y), {"sample_weight": WEIGHTS}


def cosine_warmup_clipnorm():
    schedule = keras.optimizers.schedules.CosineDecay(0.05, 20, warmup_target=0.1, warmup_steps=4)
    model = keras.Sequential([keras.Input((12,)), L.Dense(16), L.LeakyReLU(), L.LayerNormalization(),
                              L.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(schedule, clipnorm=1.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, (X, Y), {}


def dict_inputs_and_outputs():
    features, tokens = keras.Input((12,), name="feat"), keras.Input((8,), dtype="int32", name="tok")
    h = L.Concatenate()([L.Dense(8, activation="relu")(features),
                         L.GlobalAveragePooling1D()(L.Embedding(40, 4)(tokens))])
    model = keras.Model({"feat": features, "tok": tokens},
                        {"cls": L.Dense(3, activation="softmax", name="cls")(h), "reg": L.Dense(1, name="reg")(h)})
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.3}, metrics={"cls": ["accuracy"]})
    return model, ({"feat": X, "tok": TOKENS}, {"cls": Y, "reg": X[:, :1]}), {}


class Regularised(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = L.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3),
                              activity_regularizer=keras.regularizers.L1(1e-4))
        self.out = L.Dense(3)

    def call(self, x, training=False):
        return self.out(self.hidden(x))


def subclassed_regularisers_lion():
    model = Regularised()
    model.compile(keras.optimizers.Lion(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, (X, Y), {}


def unet_ignore_class():
    images = keras.Input((8, 8, 1))
    c = L.Conv2D(4, 3, padding="same", activation="relu")(images)
    up = L.UpSampling2D()(L.Conv2D(4, 3, padding="same", activation="relu")(L.MaxPooling2D()(c)))
    model = keras.Model(images, L.Conv2D(3, 1, activation="softmax")(L.Concatenate()([up, c])))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(ignore_class=255), metrics=["accuracy"])
    labels = (IMAGES[..., 0] > 0).astype("int32")
    labels[:, :2, :] = 255  # unlabelled pixels
    return model, (IMAGES, labels), {"batch_size": 16}


MODELS = [bilstm, siamese, conv1d_huber_nesterov, selu_label_smoothing_class_weight, pydataset_adagrad,
          gru_sample_weight, cosine_warmup_clipnorm, dict_inputs_and_outputs, subclassed_regularisers_lion,
          unet_ignore_class]


def train(build, run_dir: Path | None):
    keras.utils.set_random_seed(0)
    model, args, kwargs = build()
    kwargs = {"batch_size": 32, **kwargs}
    if kwargs["batch_size"] is None:
        kwargs.pop("batch_size")
    fitter = diagnose.instrument(model) if run_dir else model
    callbacks = [diagnose.Monitor(run_dir, log_every=2)] if run_dir else []
    keras.utils.set_random_seed(1)
    history = fitter.fit(*args, epochs=2, verbose=0, callbacks=callbacks, **kwargs).history
    return history, model.get_weights()


def measure(build, scratch: Path) -> dict:
    try:
        plain, plain_weights = train(build, None)
        history, weights = train(build, scratch / build.__name__)
    except Exception as error:  # noqa: BLE001 - a crash is the figure
        return {"model": build.__name__, "crash": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    check = subprocess.run([sys.executable, "-m", "diagnose.cli", "check", str(scratch / build.__name__)],
                           capture_output=True, text=True)
    return {"model": build.__name__,
            "history_equal": plain.keys() == history.keys() and all(np.array_equal(plain[k], history[k])
                                                                    for k in plain),
            "weights_max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(plain_weights, weights)),
            "check_exit": check.returncode,
            "first_finding": (check.stdout.strip().splitlines() or [""])[0][:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    args = parser.parse_args()
    builds = [m for m in MODELS if not args.only or m.__name__ in args.only]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for build in builds:
            r = measure(build, Path(scratch))
            results.append(r)
            print(f"{r['model']:36s} " + (f"CRASH {r['crash']}" if "crash" in r else
                  f"history {'equal' if r['history_equal'] else 'DIFFERS'}, weights max diff "
                  f"{r['weights_max_diff']:.3g}; check: {r['first_finding']}"), flush=True)
    same = sum(1 for r in results if r.get("history_equal") and r.get("weights_max_diff") == 0.0)
    crashes = sum(1 for r in results if "crash" in r)
    print(f"{same} of {len(results)} trained exactly as plain fit; {crashes} crashed")
    print(f"-> {common.write_result('fit_equality', {'results': results, 'equal': same, 'crashes': crashes})}")


if __name__ == "__main__":
    main()
