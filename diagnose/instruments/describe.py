"""A JSON description of a user's Keras model for config.json: layers, configs, graph edges, loss.

The findings read a model's wiring from this description (classes, configs,
edges), never from layer names. A layer whose config cannot be read (a custom layer
whose constructor takes objects Keras cannot serialise) keeps its class, name,
parameter count and edges; it only loses its config.
"""

from __future__ import annotations

import numpy as np

from diagnose.instruments.taps import activation_name
from diagnose.instruments.targets import LossInfo

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
        layers.append({"class": layer.__class__.__name__, "name": layer.name, "config": _scalar_config(layer),
                       "params": _params(layer), "inbound": inbound,
                       "output_shape": _output_shape(layer)})
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
            "params": _params(model)}


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
