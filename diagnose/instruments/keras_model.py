"""The instruments for any Keras 3 functional model: ``instrument(model)`` and ``Monitor``.

``instrument`` re-wraps a compiled functional model without touching its code: the
wrapper shares the user's layers and weights and adds, as extra outputs, the
tensors the instruments need, found from layer classes and configs (never names):

* attention: outputs of ``Softmax`` layers, of ``Activation("softmax")`` and of any
  layer configured with ``activation="softmax"`` that is not a model output;
* branch balance: the inputs of every ``Add`` layer.

Its train step computes the loss, gradients and update as Keras would, plus the
instruments, accumulated in variables. ``Monitor`` is the callback that reads them
once per logged row and writes the run record (see :mod:`diagnose.runrecord`).

    model = diagnose.instrument(model)          # after model.compile(...)
    model.fit(x, y, callbacks=[diagnose.Monitor("runs/mine")])
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.divergence import divergence
from diagnose.errors import DiagnoseError
from diagnose.gradients import dedupe_slices, guard
from diagnose.instruments import measures
from diagnose.instruments.accumulate import Accumulator, nonfinite_flags
from diagnose.instruments.rowlog import RowLog

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["instrument", "Instrumented", "Monitor", "find_tensors"]


def _activation_name(layer) -> str | None:
    act = layer.get_config().get("activation") if hasattr(layer, "get_config") else None
    if isinstance(act, dict):  # a serialised activation
        act = act.get("config", {}).get("name") or act.get("class_name")
    return act if isinstance(act, str) else None


def find_tensors(model) -> dict:
    """The symbolic tensors the instruments read, found by layer class and config.

    Returns:
        ``{"attention": [KerasTensor], "add_inputs": [[KerasTensor, ...]],
        "output_activation": str | None}``.
    """
    outputs = {id(t) for t in model.outputs}
    attention, add_inputs = [], []
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            if isinstance(layer, keras.layers.Softmax) or (
                    not isinstance(layer, keras.layers.InputLayer) and _activation_name(layer) == "softmax"):
                attention.extend(t for t in node.output_tensors if id(t) not in outputs)
            if isinstance(layer, keras.layers.Add):
                add_inputs.append(list(node.input_tensors))
    out_layer = model.outputs[0]._keras_history.operation if model.outputs else None
    return {"attention": attention, "add_inputs": add_inputs,
            "output_activation": _activation_name(out_layer) if out_layer is not None else None}


class Instrumented(keras.Model):
    """A functional model whose train step also records the instruments."""

    def _setup(self, user_model, found: dict, loss):
        self.user_model = user_model
        self.found = found
        self.n_attention = len(found["attention"])
        self.add_sizes = [len(x) for x in found["add_inputs"]]
        self.user_loss = loss
        config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
        self.from_logits = bool(config.get("from_logits", False))
        loss_name = str(getattr(loss, "name", None) or getattr(loss, "__name__", ""))
        self.binary = "binary" in loss_name and "crossentropy" in loss_name  # one probability (or logit) per example
        self.names = measures.variable_names([v.path for v in self.trainable_variables])
        self.acc = Accumulator(self.names)
        self._val_trackers = {"loss": keras.metrics.Mean(name="loss"), "accuracy": keras.metrics.Mean(name="accuracy")}

    def _split(self, outs):
        if not isinstance(outs, (list, tuple)):  # nothing to record beside the prediction: one output
            outs = [outs]
        pred, rest = outs[0], list(outs[1:])
        attention, rest = rest[: self.n_attention], rest[self.n_attention:]
        adds = []
        for size in self.add_sizes:
            adds.append(rest[:size])
            rest = rest[size:]
        return pred, attention, adds

    def _per_example(self, y, pred):
        fn = self.user_loss.call if isinstance(self.user_loss, keras.losses.Loss) else self.user_loss
        per_example = fn(y, pred)
        while len(per_example.shape) > 1:
            per_example = tf.reduce_mean(per_example, axis=-1)
        return per_example

    def _loss(self, y, pred, sample_weight):
        """Per-example losses (weighted like Keras' when ``sample_weight`` is given) and the batch loss."""
        per_example = self._per_example(y, pred)
        if sample_weight is not None:
            per_example = per_example * tf.reshape(tf.cast(sample_weight, per_example.dtype), (-1,))
        if isinstance(self.user_loss, keras.losses.Loss):
            return per_example, self.user_loss(y, pred, sample_weight=sample_weight)
        return per_example, tf.reduce_mean(per_example)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            pred, attention, adds = self._split(self(x, training=True))
            per_example, loss = self._loss(y, pred, sample_weight)
            if self.losses:
                loss = loss + tf.add_n(self.losses)
        grads = [dedupe_slices(g) for g in tape.gradient(loss, variables)]
        norms = measures.gradient_norms(grads)
        bad = nonfinite_flags(loss, grads, norms, measures.values)
        weights_before = [tf.identity(v.value) for v in variables]
        row = {"loss": tf.reduce_mean(per_example)}
        if _is_classification(y, pred):
            labels = _labels(y, pred)
            row["accuracy"] = tf.reduce_mean(measures.top1_correct(pred, labels))
            # Logits when the loss says so; otherwise outputs are normalised by their
            # sum, as Keras' cross-entropy does (a softmax output is unchanged).
            row.update(measures.output_measures(pred, labels, "softmax" if self.from_logits else "relu"))
        elif self.binary:
            row["accuracy"] = self._binary_accuracy(y, pred)
        global_norm = tf.sqrt(tf.add_n([n * n for n in norms]))
        row["grad_norm/global"] = global_norm
        for name, n in zip(self.names, norms):
            row[f"grad_norm/{name}"] = n
        row["clip_fired"] = _clip_fired(self.optimizer, norms, global_norm)
        hists = []
        for k, a in enumerate(attention, start=1):
            a2 = tf.reshape(a, (-1, tf.shape(a)[-1]))
            row.update(measures.attention_measures(a2, tf.zeros_like(a2, dtype=tf.bool), k))
            hists.append(measures.argmax_histogram(a2))
        for k, inputs in enumerate(adds, start=1):
            for j, t in enumerate(inputs):
                row[f"rms/add{k}_in{j}"] = measures.rms(t)
        finite = tf.logical_not(tf.reduce_any(bad))
        safe = [guard(g, finite) for g in grads]
        self.optimizer.apply(safe, variables)
        for name, v, w0 in zip(self.names, variables, weights_before):
            w_norm = tf.norm(w0)
            row[f"update_ratio/{name}"] = tf.norm(v.value - w0) / tf.maximum(w_norm, 1e-12)
            row[f"weight_norm/{name}"] = w_norm
        hist = tf.stack(hists) if hists and len({h.shape[0] for h in hists}) == 1 else None
        self.acc.add(row, hist, bad)
        return {"loss": loss}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        pred = self._split(self(x, training=False))[0]
        per_example, loss = self._loss(y, pred, sample_weight)
        n = tf.cast(tf.shape(per_example)[0], tf.float32)
        # Means over the whole validation set, weighted by batch size.
        self._val_trackers["loss"].update_state(loss, sample_weight=n)
        if _is_classification(y, pred):
            self._val_trackers["accuracy"].update_state(
                tf.reduce_mean(measures.top1_correct(pred, _labels(y, pred))), sample_weight=n)
        elif self.binary:
            self._val_trackers["accuracy"].update_state(self._binary_accuracy(y, pred), sample_weight=n)
        return {k: m.result() for k, m in self._val_trackers.items()}

    def _binary_accuracy(self, y, pred):
        """Keras' binary accuracy, thresholded at 0.5 (at 0 for logits)."""
        y = tf.reshape(tf.cast(y, pred.dtype), tf.shape(pred))
        hits = keras.metrics.binary_accuracy(y, pred, threshold=0.0 if self.from_logits else 0.5)
        return tf.reduce_mean(tf.cast(hits, tf.float32))

    @property
    def metrics(self):
        return list(getattr(self, "_val_trackers", {}).values())

    def probe_losses(self, x, y):
        """Loss on (x, y) with real, batch-shuffled and zeroed inputs (host call)."""
        # Any input structure Keras takes: one array, a list, a dict by input name.
        shuffled = keras.tree.map_structure(lambda t: np.roll(np.asarray(t), 1, axis=0), x)
        zeroed = keras.tree.map_structure(lambda t: np.zeros_like(np.asarray(t)), x)
        out = []
        for inp in (x, shuffled, zeroed):
            pred = self._split(self(inp, training=False))[0]
            out.append(float(tf.reduce_mean(self._per_example(tf.constant(y), pred))))
        return out


def _is_classification(y, pred) -> bool:
    """One row of class scores per example (two classes or more) with integer or one-hot targets.

    A single output column is a regression (or one sigmoid unit): no top-1 class to score.
    """
    if len(pred.shape) != 2 or pred.shape[-1] is None or pred.shape[-1] < 2:
        return False
    return len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] in (1, pred.shape[-1]))


def _labels(y, pred):
    if len(y.shape) == 2 and y.shape[-1] == pred.shape[-1] and pred.shape[-1] != 1:
        return tf.argmax(y, -1, output_type=tf.int32)
    return tf.cast(tf.reshape(y, (-1,)), tf.int32)


def _clip_fired(optimizer, norms, global_norm):
    if getattr(optimizer, "global_clipnorm", None):
        return tf.cast(global_norm > optimizer.global_clipnorm, tf.float32)
    if getattr(optimizer, "clipnorm", None):
        return tf.cast(tf.reduce_any(tf.stack(norms) > optimizer.clipnorm), tf.float32)
    return tf.constant(0.0)


def instrument(model) -> Instrumented:
    """Wraps a compiled Keras 3 functional model so its training records the instruments.

    The wrapper shares the model's layers and weights (training it trains the
    user's model) and is compiled with the model's optimizer and loss.

    Raises:
        DiagnoseError: the model is not functional, not compiled or has several outputs.
    """
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise DiagnoseError("diagnose.instrument needs a functional Keras model (built from keras.Input); "
                            "wrap a subclassed model's call in keras.Model(inputs, outputs) first")
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise DiagnoseError("compile the model (optimizer and loss) before diagnose.instrument(model)")
    if len(model.outputs) > 1:
        raise DiagnoseError(f"diagnose.instrument takes a model with one output ({model.name!r} has "
                            f"{len(model.outputs)}); instrument a keras.Model(inputs, the_output_to_diagnose) "
                            "compiled with that output's loss")
    found = find_tensors(model)
    extra = list(found["attention"]) + [t for inputs in found["add_inputs"] for t in inputs]
    wrapper = Instrumented(inputs=model.inputs, outputs=[model.outputs[0], *extra], name=f"{model.name}_instrumented")
    loss = keras.losses.get(model.loss)
    # Compiled as the user's model is (Keras resolves "auto" to XLA where the model supports it): a step
    # of many small instrument ops costs ~50% more run op by op than fused.
    wrapper.compile(optimizer=model.optimizer, loss=None, jit_compile=getattr(model, "jit_compile", "auto"))
    wrapper._setup(model, found, loss)
    return wrapper


class Monitor(keras.callbacks.Callback):
    """Writes an instrumented model's run record while ``fit`` trains it.

    Args:
        run_dir: where config.json, metrics.csv, attention.csv, summary.json and
            tb/ go.
        log_every: batches per metrics.csv row.
        probe: optional fixed ``(x, y)`` batch for the ignores-input probe.
        probe_every: batches between probes.
        baselines: optional dict merged into summary.json's baselines (ln V,
            unigram entropy of the targets...).
        tensorboard: also write TensorBoard scalars.
        overwrite: replace a run record already in ``run_dir`` (by default refused,
            as ``diagnose train`` refuses without ``--force``).

    Raises:
        DiagnoseError: ``run_dir`` is a file, an ablation directory, or holds a
            run record and ``overwrite`` is False.
    """

    def __init__(self, run_dir, log_every: int = 20, probe=None, probe_every: int = 200,
                 baselines: dict | None = None, tensorboard: bool = True, overwrite: bool = False):
        from diagnose import studydir

        super().__init__()
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} is a file; give a directory for the run record")
        if studydir.is_study_dir(self.run_dir):
            raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} is an ablation directory; give a run directory "
                                "of its own")
        if runrecord.is_run_dir(self.run_dir) and not overwrite:
            raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} already holds a run record; pass another run_dir, "
                                "or overwrite=True to replace it")
        self.log_every, self.probe, self.probe_every = log_every, probe, probe_every
        self.baselines = dict(baselines or {})
        self.tensorboard = tensorboard

    def on_train_begin(self, logs=None):
        if not isinstance(self.model, Instrumented):
            raise DiagnoseError("diagnose.Monitor needs the model returned by diagnose.instrument(model)")
        self.step, self.epoch, self.logged_step = 0, 0, None
        self.t0 = time.perf_counter()
        self.status, self.error, self.diverged = "running", None, None
        user = self.model.user_model
        runrecord.begin_record(self.run_dir, model=_describe(user), data={},
                               train={"log_every": self.log_every, "probe_every": self.probe_every,
                                      "optimizer": keras.optimizers.serialize(user.optimizer)["config"]})
        self.log = RowLog(self.run_dir, tensorboard=self.tensorboard)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.log_every == 0:
            self._log()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        row = self._log() if self.step != self.logged_step else (self.log.rows[-1] if self.log.rows else None)
        if row is not None and logs:
            for key in ("val_loss", "val_accuracy"):
                if key in logs:
                    row[{"val_loss": "valid_loss", "val_accuracy": "valid_accuracy"}[key]] = float(logs[key])
            if "val_loss" in logs:
                row["valid_perplexity"] = math.exp(min(float(logs["val_loss"]), 700.0))
        self.log.flush()

    def _log(self):
        acc = self.model.acc.read_and_reset()
        row = {"step": self.step, "epoch": self.epoch, "learning_rate": float(self.model.optimizer.learning_rate),
               **acc["row"]}
        if self.probe is not None and self.probe_every and self.step % self.probe_every == 0:
            real, shuffled, zeroed = self.model.probe_losses(*self.probe)
            row.update(probe_loss_real=real, probe_loss_shuffled=shuffled, probe_loss_zeroed=zeroed)
        self.log.append(row, acc["histogram"])
        self.logged_step = self.step
        if acc["diverged"] and self.status == "running":
            self.status, self.diverged = "diverged", acc["diverged"]
            self.error = f"non-finite value at step {acc['diverged']['step']} (variable {acc['diverged']['variable']})"
            self.model.stop_training = True
        elif self.status == "running" and (blown := divergence(row, self._classes())):
            self.status, self.diverged = "diverged", {"step": self.step, "variable": blown["variable"]}
            self.error = blown["error"]
            self.model.stop_training = True
        return row

    def _classes(self) -> int | None:
        """Classes the loss is over (2 for a binary one), or None for an output that is no classification."""
        if self.model.binary:
            return 2
        width = self.model.outputs[0].shape[-1]
        return width if self.log.rows and "target_prob" in self.log.rows[-1] and width else None

    def on_train_end(self, logs=None):
        if self.step != self.logged_step:  # a row for the steps since the last one, never an empty one
            self._log()
        self.log.close()
        losses = [r["loss"] for r in self.log.rows if isinstance(r.get("loss"), float) and not math.isnan(r["loss"])]
        valid = [r["valid_loss"] for r in self.log.rows if r.get("valid_loss") is not None]
        wall = time.perf_counter() - self.t0
        runrecord.write_summary(self.run_dir, {
            "status": "completed" if self.status == "running" else self.status, "error": self.error,
            "steps": self.step, "epochs": self.epoch,
            "final": {"train_loss": losses[-1] if losses else None, "valid_loss": valid[-1] if valid else None},
            "best": {"valid_loss": min(valid) if valid else None},
            "baselines": self.baselines, "diverged_at": self.diverged, "wall_time_s": wall,
        })


def _describe(model) -> dict:
    """A JSON description of a user's model: class, layers with their configs and graph edges, loss.

    Each layer's ``inbound`` lists, per call of the layer (a shared layer has
    several), the names of the layers that produced its inputs: the findings read
    the wiring from these edges and the layer classes, never from layer names.
    ``outputs`` names the layers producing the model's outputs, and
    ``loss_from_logits`` says whether the loss reads logits (a loss object's
    ``from_logits``; False for a loss given by name, Keras' default).
    """
    layers = []
    for layer in model.layers:
        cfg = layer.get_config()
        inbound = [[t._keras_history.operation.name for t in node.input_tensors
                    if getattr(t, "_keras_history", None) is not None]
                   for node in getattr(layer, "_inbound_nodes", [])]
        layers.append({"class": layer.__class__.__name__, "name": layer.name,
                       "config": {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool, type(None)))},
                       "params": int(layer.count_params()) if layer.built else None,
                       "inbound": inbound})
    loss = model.loss
    from_logits = False
    if isinstance(loss, keras.losses.Loss):
        from_logits = bool(loss.get_config().get("from_logits", False))
    outputs = [t._keras_history.operation.name for t in (getattr(model, "outputs", None) or [])
               if getattr(t, "_keras_history", None) is not None]
    return {"kind": "keras", "class": model.__class__.__name__, "name": model.name, "layers": layers,
            "loss": loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__),
            "loss_from_logits": from_logits, "outputs": outputs,
            "params": int(model.count_params())}
