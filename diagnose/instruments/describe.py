"""A JSON description of a user's Keras model for config.json: layers, configs, graph edges, loss.

The findings read a model's wiring from this description (classes, configs,
edges), never from layer names. Each layer also says whether it is trainable, how
many of its parameters train and how many are frozen, and, for a preprocessing
layer, whether it holds an adapted state; layers nested inside the model's own
(a shared encoder, a custom layer's sublayers) are listed under ``inner_layers``,
and a functional model's ops that are not layers (``keras.ops.stop_gradient``) as
entries with ``"operation": true``. A layer whose config cannot be read (a custom layer
whose constructor takes objects Keras cannot serialise) keeps its class, name,
parameter count and edges; it only loses its config.
"""

from __future__ import annotations

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.taps import activation_name
from diagnose.instruments.targets import LossInfo

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["describe", "variables", "variable_layers", "initial_weights", "input_names"]


def _scalar_config(layer) -> dict:
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - NotImplementedError, TypeError...: the config is optional
        return {"config_unavailable": True}
    out = {}
    for key, value in config.items():
        if isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
        elif isinstance(value, dict) and isinstance(value.get("class_name"), str) and key.endswith("initializer"):
            # An initializer as its class and constant, enough to tell a constant init from a random one.
            inner = value.get("config") or {}
            out[key] = value["class_name"] if "value" not in inner else f"{value['class_name']}({inner['value']})"
    if "activation" not in out and activation_name(layer):
        out["activation"] = activation_name(layer)
    return out


def _params(layer) -> int | None:
    """The layer's parameter count, from its weights (count_params refuses a model built only by a call)."""
    try:
        return int(sum(int(np.prod(w.shape)) for w in layer.weights))
    except (AttributeError, ValueError, TypeError):
        return None


# Preprocessing layers whose state comes from ``adapt`` (or from arguments): without it
# they compute an identity (Normalization: mean 0, variance 1) or map every token to
# the out-of-vocabulary index (the lookups, TextVectorization).
LOOKUPS = ("StringLookup", "IntegerLookup", "TextVectorization")


def _adapted(layer) -> bool | None:
    """Whether a preprocessing layer holds an adapted (or given) state; None for other layers."""
    cls = type(layer).__name__
    try:
        if cls == "Normalization":
            config = layer.get_config()
            if config.get("mean") is not None or not layer.built:
                return config.get("mean") is not None
            mean = np.asarray(layer.mean if hasattr(layer, "mean") else layer.adapt_mean)
            variance = np.asarray(layer.variance if hasattr(layer, "variance") else layer.adapt_variance)
            return not (np.all(mean == 0) and np.all(variance == 1))
        if cls in LOOKUPS:
            size = int(layer.vocabulary_size())
            oov = int(getattr(layer, "num_oov_indices", 1) or 0)
            mask = 1 if getattr(layer, "mask_token", None) is not None or cls == "TextVectorization" else 0
            return size > oov + mask
        if cls == "Discretization":
            return getattr(layer, "bin_boundaries", None) is not None and len(layer.bin_boundaries) > 0
    except Exception:  # noqa: BLE001 - a layer we cannot read says nothing
        return None
    return None


def _weights(layer) -> dict:
    """Parameter counts: trainable, and non-trainable that training would otherwise move.

    BatchNormalization's moving statistics and a preprocessing layer's state are
    non-trainable by design; what counts as frozen is a weight a trainable layer
    would have trained.
    """
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    frozen = 0 if layer.trainable else sum(int(np.prod(w.shape)) for w in layer.weights
                                            if not _state_weight(layer, w))
    return {"trainable_params": trainable, "frozen_params": frozen}


def _state_weight(layer, weight) -> bool:
    """A weight that is state by construction (moving statistics, counts, vocabularies)."""
    leaf = weight.path.rsplit("/", 1)[-1]
    return leaf.startswith(("moving_", "count", "mean", "variance")) or type(layer).__name__ in (
        LOOKUPS + ("Normalization", "Discretization"))


def _entry(layer) -> dict:
    entry = {"class": layer.__class__.__name__, "name": layer.name, "config": _scalar_config(layer),
             "params": _params(layer), "trainable": bool(layer.trainable), **_weights(layer),
             "output_shape": _output_shape(layer)}
    adapted = _adapted(layer)
    if adapted is not None:
        entry["adapted"] = adapted
    return entry


def _inner_layers(model) -> list[dict]:
    """Layers nested inside the model's own layers (a shared encoder model, a custom layer's sublayers)."""
    top = {id(layer) for layer in model.layers}
    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if id(layer) in top:
            continue
        entry = _entry(layer)
        entry.pop("output_shape", None)
        out.append(entry)
    return out


def _operations(model) -> list[dict]:
    """Ops of a functional model that are not layers (``keras.ops.stop_gradient`` on a KerasTensor...)."""
    layers = {id(layer) for layer in model.layers}
    out = []
    for op in getattr(model, "operations", None) or []:
        if id(op) in layers or isinstance(op, keras.layers.Layer):
            continue
        inbound = [[t._keras_history.operation.name for t in node.input_tensors
                    if getattr(t, "_keras_history", None) is not None]
                   for node in getattr(op, "_inbound_nodes", [])]
        out.append({"class": type(op).__name__, "name": op.name, "config": {}, "params": 0, "operation": True,
                    "inbound": inbound, "output_shape": None})
    return out


def _output_shape(layer):
    try:
        return [d for d in layer.output.shape]
    except (AttributeError, ValueError):
        return None


def input_names(model) -> list[str]:
    """The model's inputs by their input layers' names, which its config (and so the rules) know them by.

    An unnamed ``keras.Input``'s tensor has another name ("keras_tensor_3" beside
    "input_layer"); a subclassed model has none ([]).
    """
    return [getattr(getattr(getattr(t, "_keras_history", None), "operation", None), "name", None) or t.name
            for t in getattr(model, "inputs", None) or []]


def describe(model) -> dict:
    """The model as config.json's ``model`` entry (``kind: "keras"``)."""
    layers = []
    for layer in model.layers:
        inbound = [[t._keras_history.operation.name for t in node.input_tensors
                    if getattr(t, "_keras_history", None) is not None]
                   for node in getattr(layer, "_inbound_nodes", [])]
        layers.append({**_entry(layer), "inbound": inbound})
    layers += _operations(model)
    info = LossInfo.of(model)
    loss = model._compile_config.config.get("loss") if getattr(model, "_compile_config", None) else model.loss
    outputs = [t._keras_history.operation.name for t in (getattr(model, "outputs", None) or [])
               if getattr(t, "_keras_history", None) is not None]
    output_shape = None
    if getattr(model, "outputs", None):
        output_shape = list(model.outputs[0].shape)
    return {"kind": "keras", "class": model.__class__.__name__, "name": model.name, "layers": layers,
            "loss": loss if isinstance(loss, str) or loss is None else getattr(loss, "name", None) or getattr(
                loss, "__name__", type(loss).__name__),
            "loss_kind": info.kind, "loss_from_logits": info.from_logits, "loss_reduction":
                "sum" if info.summed else "mean",
            "outputs": outputs, "output_shape": output_shape,
            "optimizer": type(model.optimizer).__name__ if model.optimizer is not None else None,
            "params": _params(model), "inner_layers": _inner_layers(model), "inputs": input_names(model)}


def variables(model) -> dict:
    """Short variable name -> shape, for summary.json (rules tell weight matrices from biases by it)."""
    from diagnose.instruments.measures import variable_names

    names = variable_names([v.path for v in model.trainable_variables])
    return {n: [int(d) for d in v.shape] for n, v in zip(names, model.trainable_variables)}


def variable_layers(model) -> dict:
    """Short variable name -> class of the layer that owns it (rules tell embedding tables from maps by it)."""
    from diagnose.instruments.measures import variable_names

    owner = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for v in getattr(layer, "_trainable_variables", []):
            owner.setdefault(v.path, type(layer).__name__)
    names = variable_names([v.path for v in model.trainable_variables])
    return {n: owner.get(v.path, "") for n, v in zip(names, model.trainable_variables)}


def initial_weights(model) -> dict:
    """What a record keeps of the weights before training, from one read of each trainable variable.

    Returns:
        ``{"initial_weight_norms": {NAME: ||w||}, "initial_weight_digests": {NAME: hex | None}}``:
        the digest is a 64-bit hash of the variable's values, None where every entry is
        equal (zeros, ones: values no seed draws). Two runs at different seeds whose
        digests of one variable are equal did not draw it from their seeds
        (:func:`diagnose.findings.verdict.seed_blind_weights`).
    """
    import hashlib

    import numpy as np

    from diagnose.instruments.measures import variable_names

    names = variable_names([v.path for v in model.trainable_variables])
    norms, digests = {}, {}
    for name, v in zip(names, model.trainable_variables):
        values = np.ascontiguousarray(v.numpy())
        norms[name] = float(np.linalg.norm(values.astype(np.float64)))
        constant = values.size == 0 or bool(np.all(values == values.flat[0]))
        digests[name] = None if constant else hashlib.blake2b(values.tobytes(), digest_size=8).hexdigest()
    return {"initial_weight_norms": norms, "initial_weight_digests": digests}
