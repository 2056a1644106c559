"""What a model's layers make of a sample of its training inputs, for the model-task contract: what each
preprocessing layer reading an input produces (out-of-vocabulary share, normalised scale), the padding each
Embedding reads, and the scale the first weights see after the model's own preprocessing."""

from __future__ import annotations

import functools

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.describe import LOOKUPS

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["preprocessing_facts", "embedding_facts", "first_weights_facts"]


def preprocessing_facts(model, x) -> list[dict]:
    """What each preprocessing layer reading a model input directly makes of a batch of that input.

    A lookup (TextVectorization, StringLookup, IntegerLookup): the share of its non-padding
    outputs that are the out-of-vocabulary index (a vocabulary adapted on other data misses
    most tokens). A Normalization layer: the RMS of its output (about 1 when its mean and
    variance fit the data).
    """
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs or x is None:
        return []
    flat = list(x.values()) if isinstance(x, dict) else list(x) if isinstance(x, (list, tuple)) else [x]
    by_name = x if isinstance(x, dict) else {}
    out = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in LOOKUPS + ("Normalization",):
            continue
        for node in getattr(layer, "_inbound_nodes", [])[:1]:
            tensors = node.input_tensors
            if len(tensors) != 1 or not any(tensors[0] is t for t in inputs):
                continue
            position = next(i for i, t in enumerate(inputs) if tensors[0] is t)
            data = by_name.get(tensors[0].name, flat[position] if position < len(flat) else None)
            if data is None:
                continue
            try:
                values = np.asarray(keras.ops.convert_to_numpy(layer(data)))
            except Exception:  # noqa: BLE001 - a layer we cannot call on the batch says nothing
                continue
            facts = {"name": layer.name, "class": cls}
            if cls == "Normalization":
                facts["output_rms"] = float(np.sqrt(np.mean(np.square(values.astype(np.float64)))))
            else:
                oov = int(getattr(layer, "num_oov_indices", 1) or 0)
                mask = 1 if cls == "TextVectorization" or getattr(layer, "mask_token", None) is not None else 0
                ids = values[values != 0] if mask else values.reshape(-1)
                if ids.size and values.dtype.kind in "iu":
                    facts["oov_share"] = float(np.mean((ids >= mask) & (ids < mask + oov)))
            out.append(facts)
    return out


def _submodel(inputs, tensor, x):
    """``tensor``'s value on the batch ``x``: the model up to it, called as the model is (one input bare)."""
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, tensor)(x, training=False)


def embedding_facts(model, x) -> list[dict]:
    """The share of padding (id 0) in the ids each Embedding layer of a functional model reads on a batch.

    The ids may be made inside the model (a TextVectorization pads its sequences with 0),
    where the model's inputs show no padding; the layers up to the Embedding are run once.
    """
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs or x is None:
        return []
    out = []
    for layer in model.layers:
        if type(layer).__name__ != "Embedding" or not getattr(layer, "_inbound_nodes", None):
            continue
        tensors = layer._inbound_nodes[0].input_tensors
        if len(tensors) != 1:
            continue
        try:
            ids = np.asarray(keras.ops.convert_to_numpy(_submodel(inputs, tensors[0], x)))
        except Exception:  # noqa: BLE001 - a layer we cannot reach from the inputs says nothing
            continue
        if ids.size and ids.dtype.kind in "iuf":
            out.append({"name": layer.name, "zero_share": float(np.mean(ids == 0)),
                        "mask_zero": bool(getattr(layer, "mask_zero", False))})
    return out


_WEIGHTED = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D",
             "DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "LSTM", "GRU", "SimpleRNN")
# Layers whose output scale does not follow their input's: what comes after them is not "the input".
_RESCALING = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Embedding",
              "Discretization", "Hashing", "IntegerLookup", "StringLookup", "CategoryEncoding", "TextVectorization")


def _reads_input_directly(tensor, inputs, depth: int = 0) -> bool:
    """Whether ``tensor`` comes from the model's inputs through layers with no weights of their own (and no
    normalisation or lookup): what it carries is the input, at whatever scale preprocessing left it."""
    if any(tensor is t for t in inputs):
        return True
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None)
    if op is None or depth > 32 or type(op).__name__ in _RESCALING or type(op).__name__ == "InputLayer":
        return False
    if isinstance(op, keras.layers.Layer) and op.trainable_weights:
        return False
    node = op._inbound_nodes[history.node_index] if getattr(op, "_inbound_nodes", None) else None
    parents = node.input_tensors if node is not None else []
    return bool(parents) and all(_reads_input_directly(t, inputs, depth + 1) for t in parents)


def first_weights_facts(model, x) -> list[dict]:
    """The RMS of what each weight layer reading the model's inputs directly gets on a batch: the scale the
    first weights see, after whatever preprocessing layers the model applies (a Rescaling applied twice)."""
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs or x is None:
        return []
    out = []
    for layer in model.layers:
        nested = isinstance(layer, keras.Model) and getattr(layer, "inputs", None)
        if (type(layer).__name__ not in _WEIGHTED and not nested) or not getattr(layer, "_inbound_nodes", None):
            continue
        tensors = layer._inbound_nodes[0].input_tensors
        if len(tensors) != 1 or not _reads_input_directly(tensors[0], inputs):
            continue
        try:
            values = np.asarray(keras.ops.convert_to_numpy(_submodel(inputs, tensors[0], x)))
        except Exception:  # noqa: BLE001 - a tensor we cannot reach from the inputs says nothing
            continue
        if nested:  # a block of layers (a conv base): its own first weights, on what it is given
            out += [{**f, "name": f"{layer.name}/{f['name']}"} for f in first_weights_facts(layer, values)]
        elif values.size and values.dtype.kind == "f":
            out.append({"name": layer.name, "input_rms": float(np.sqrt(np.mean(np.square(values.astype(
                np.float64)))))})
    return out


# How each output activation is undone to its pre-activation (up to what an affine map keeps): a softmax's
# log-probabilities centred over the classes are its logits centred the same way.
_UNDO = {
    "linear": lambda out: out,
    "sigmoid": lambda out: np.log(out) - np.log1p(-out),
    "tanh": np.arctanh,
    "softmax": lambda out: np.log(out) - np.log(out).mean(axis=-1, keepdims=True),
}

def _forward(model):
    """``model``'s forward pass without dropout: eager on TensorFlow, else one compiled call (an eager pass on
    JAX costs ~1 ms an op, seconds for a convnet), compiled once per model and kept on it for its next fits."""
    if keras.backend.backend() == "tensorflow":
        return functools.partial(model, training=False)
    if getattr(model, "_diagnose_forward", None) is None:
        from diagnose.instruments.backends.inference import inference_function

        # (set past Keras' attribute tracking; a cycle through the model, collected with it)
        object.__setattr__(model, "_diagnose_forward", inference_function(model, lambda run, batch: run(batch)))
    return model._diagnose_forward


def affine_facts(model, x, at_start, activations, rolled=None) -> dict | None:
    """Whether the model, its output activations undone, is one affine map of its input at its initial weights.

    Each example of the batch ``x`` is paired with the next one: an affine map sends the
    midpoint of two inputs to the midpoint of their outputs, and any nonlinearity on the
    path bends it. Measured on the pre-activations (``activations`` per output, see
    ``_UNDO``), since a sigmoid or softmax head is meant to be the one nonlinearity of a
    logistic model. None where it cannot be measured: an integer input (token ids do not
    interpolate), an output activation with no inverse, a forward pass that fails, or
    saturated outputs. ``rolled``: the outputs on ``x`` rolled by one example (flat, one per
    output) where they are known already (the probe's shuffled batch), else None.

    Returns:
        ``{"deviation": float}``: the largest distance of a midpoint's output from the
        midpoint of the outputs, over the largest distance between two outputs of a
        pair (float rounding for an affine model; far more where anything bends).
    """
    if at_start is None or len(x_list := keras.tree.flatten(x)) == 0:
        return None
    arrays = [np.asarray(keras.ops.convert_to_numpy(a)) for a in x_list]
    if any(a.dtype.kind != "f" or len(a) < 3 for a in arrays) or len(at_start) != len(activations):
        return None
    undo = [_UNDO.get(str(activation)) for activation in activations]
    if any(u is None for u in undo):
        return None
    other = keras.tree.pack_sequence_as(x, [np.roll(a, 1, axis=0) for a in arrays])
    middle = keras.tree.pack_sequence_as(x, [(a + np.roll(a, 1, axis=0)) / 2 for a in arrays])
    try:
        forward = _forward(model)
        outs = [keras.tree.flatten(forward(batch)) if known is None else known
                for batch, known in ((other, rolled), (middle, None))]
    except Exception:  # noqa: BLE001 - a forward pass we cannot take says nothing
        return None
    worst = spread = 0.0
    with np.errstate(all="ignore"):
        for k, fn in enumerate(undo):
            first, second, mid = (fn(np.asarray(keras.ops.convert_to_numpy(o), np.float64)).reshape(len(arrays[0]), -1)
                                  for o in (at_start[k], outs[0][k], outs[1][k]))
            if not (np.all(np.isfinite(first)) and np.all(np.isfinite(second)) and np.all(np.isfinite(mid))):
                return None  # saturated: the inverse is not measurable there
            worst = max(worst, float(np.max(np.abs(mid - (first + second) / 2))))
            spread = max(spread, float(np.max(np.abs(first - second))))
    if spread <= 0:
        return None  # every example gives the same output: nothing to tell a line from a curve by
    return {"deviation": worst / spread}
