"""Finding, inside any Keras model, the tensors the instruments read, and capturing them as it runs.

Layers are found by class and configuration, never by name, anywhere in the model
(inside custom and subclassed layers too):

* attention: ``Softmax`` layers, ``Activation("softmax")`` and any layer configured
  with ``activation="softmax"`` that is not the model's output; and every
  ``MultiHeadAttention`` (its weights are recomputed from the query and key it
  attends with, because Keras' fused kernel never materialises them);
* tables added to an input: a layer that adds a trainable weight of its own to its
  output whatever the input (a position embedding, the question's
  ``Added_Weights``): a weight of two or more axes with exactly the shape of one
  example's output, which, where the layer's input shape is known, is checked to
  shift the output by exactly the change made to it;
* ``Add`` layers: each input by the layer that produced it, or, when exactly one of
  them does not depend on the model's inputs at all, as ``position`` and ``content``.

Capturing wraps the ``call`` of those layer instances (``MultiHeadAttention``'s
``_compute_attention``) once; outside :meth:`Taps.capture` the wrapper only passes
through, so the user's model computes what it computed before, op for op.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.family import AttentionSite, BranchSite

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["Taps", "activation_name", "ROWS_MEASURED", "site_arrays"]

# Attention and branch figures are means over examples; the first 64 rows of a batch
# give them to a few percent and bound the cost on a large batch.
ROWS_MEASURED = 64
# A MultiHeadAttention's figures are means over its rows (example, head, query position) too: on a long
# sequence, 64 query positions evenly spaced (every second of 128, every fourth of 200) give them as a few
# dozen examples do, and bound the cost, which grows with the square of the length (the weights are
# recomputed and read whole: on a 200-token Transformer on PyTorch, 17 ms of a sampled step's 40 for all).
QUERIES_MEASURED = 64

# Layers whose weights are maps or statistics, never a table added to the output.
_NOT_TABLES = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding,
               keras.layers.MultiHeadAttention, keras.layers.BatchNormalization,
               keras.layers.LayerNormalization, keras.layers.RNN, keras.layers.LSTM, keras.layers.GRU,
               keras.layers.SimpleRNN, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
               keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D,
               keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)

_session = threading.local()  # the capture in progress on this thread, if any


def activation_name(layer) -> str | None:
    """The name of a layer's activation ("softmax", "relu"...), or None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) if callable(act) else act
    return name if isinstance(name, str) else None


def _head(t):
    return t[:ROWS_MEASURED]


class Taps:
    """The instrumented places of one Keras model.

    Args:
        model: a built Keras model (functional, Sequential or subclassed).
    """

    def __init__(self, model):
        self.model = model
        self.roles: dict[int, tuple] = {}  # id(layer) -> (role, details)
        outputs = _output_layers(model)
        inside_mha = {id(sub) for layer in _layers(model) if isinstance(layer, keras.layers.MultiHeadAttention)
                      for sub in _layers(layer)}
        depends = _input_dependence(model)
        for layer in _layers(model):
            if id(layer) in inside_mha:
                continue  # MultiHeadAttention's own Softmax: measured through the layer itself
            if isinstance(layer, keras.layers.MultiHeadAttention):
                self._hook(layer, "_compute_attention", ("mha", None))
            elif activation_name(layer) == "softmax" and id(layer) not in outputs:
                self._hook(layer, "call", ("softmax", None))
            elif isinstance(layer, keras.layers.Add):
                self._hook(layer, "call", ("add", _branch_names(layer, depends)))
            elif not isinstance(layer, _NOT_TABLES):
                table = table_weight(layer)
                if table is not None:
                    self._hook(layer, "call", ("table", table))

    @property
    def found(self) -> dict:
        """How many places of each kind were found (for the run record's description)."""
        counts: dict = {}
        for role, _ in self.roles.values():
            counts[role] = counts.get(role, 0) + 1
        return counts

    def _hook(self, layer, method: str, role: tuple) -> None:
        self.roles[id(layer)] = role
        original = getattr(layer, method)
        if getattr(original, "_diagnose_tap", False):
            return  # hooked by an earlier instrument(): the hook reads the current session's roles

        def hooked(*args, **kwargs):
            out = original(*args, **kwargs)
            capture = getattr(_session, "capture", None)
            if capture is not None and id(layer) in capture.roles:
                capture.record(layer, args, kwargs, out)
            return out

        hooked._diagnose_tap = True
        object.__setattr__(layer, method, hooked)  # an instance attribute, invisible to Keras' tracking

    @contextlib.contextmanager
    def capture(self):
        """Records what the hooked layers compute while the model runs in this block."""
        capture = _Capture(self.roles)
        previous = getattr(_session, "capture", None)
        _session.capture = capture
        try:
            yield capture
        finally:
            _session.capture = previous


class _Capture:
    """The sites one forward pass produced, in call order.

    Recording keeps what each site needs (its layer's inputs and outputs); the sites'
    tensors are only built when :meth:`sites` is called, so a step that does not
    measure them (see the wrapper's schedule) computes nothing for them.
    """

    def __init__(self, roles: dict):
        self.roles = roles
        self.attention: list[AttentionSite] = []
        self.branches: list[BranchSite] = []
        self._pending: list = []
        self._seen_sites: set[int] = set()

    def record(self, layer, args, kwargs, out) -> None:
        role, details = self.roles[id(layer)]
        if role == "softmax":
            mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
            self._pending.append(lambda: self._softmax(layer, out, mask))
        elif role == "mha":
            self._pending.append(lambda: self._mha(layer, args, kwargs))
        elif id(layer) not in self._seen_sites:  # a shared table or Add: its first call stands for all
            self._seen_sites.add(id(layer))
            if role == "add":
                inputs = args[0] if args else kwargs.get("inputs")
                self._pending.append(lambda: self._add(layer, inputs, details))
            elif role == "table":
                # The table as this forward pass added it (a copy: PyTorch's optimizer updates it in place).
                value = ops.copy(details)
                self._pending.append(lambda: self._table(layer, out, value))

    def sites(self) -> tuple[list[AttentionSite], list[BranchSite]]:
        """The attention and branch sites, their tensors built now (in the caller's graph context)."""
        self.attention, self.branches = [], []
        for build in self._pending:
            build()
        return self.attention, self.branches

    def _softmax(self, layer, out, mask) -> None:
        rank = _rank(out)
        if rank is None or rank < 2:
            return
        axis = getattr(layer, "axis", -1)
        if not isinstance(axis, int):
            return
        probs = ops.stop_gradient(_head(out))
        masked = None if mask is None else ops.logical_not(ops.cast(_head(mask), "bool"))
        if axis not in (-1, rank - 1):
            probs = ops.moveaxis(probs, axis, -1)
            masked = None if masked is None else ops.moveaxis(ops.broadcast_to(masked, ops.shape(_head(out))),
                                                              axis, -1)
        self.attention.append(AttentionSite(probs, masked=masked))

    def _mha(self, layer, args, kwargs) -> None:
        names = ("query", "key", "value", "attention_mask")
        given = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
        query, key, mask = given.get("query"), given.get("key"), given.get("attention_mask")
        if query is None or key is None:
            return
        query, key = ops.stop_gradient(_head(query)), ops.stop_gradient(_head(key))
        if mask is None and kwargs.get("use_causal_mask"):
            mask = layer._compute_causal_mask(query, key)
        elif mask is not None:
            mask = _head(mask)
        query, mask = _spaced_queries(layer, query, mask)
        # The weights Keras' attention computes (its fused kernel keeps them to itself).
        scores = ops.einsum(layer._dot_product_equation, key, query * layer._inverse_sqrt_key_dim)
        probs = layer._masked_softmax(scores, mask)
        masked = None
        if mask is not None:
            mask = ops.cast(mask, "bool")
            for _ in range(len(scores.shape) - len(mask.shape)):
                mask = ops.expand_dims(mask, axis=-len(layer._attention_axes) * 2 - 1)
            masked = ops.logical_not(mask)
        self.attention.append(AttentionSite(probs, masked=masked))

    def _add(self, layer, inputs, names) -> None:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            return
        inputs = [ops.stop_gradient(_head(t)) for t in inputs]
        if names and names.get("position") is not None:
            j = names["position"]
            content = functools.reduce(ops.add, [t for i, t in enumerate(inputs) if i != j])
            self.branches.append(BranchSite(layer.name, {"content": content, "position": inputs[j]}))
            return
        labels = (names or {}).get("inputs") or [f"in{j}" for j in range(len(inputs))]
        if len(labels) != len(inputs):
            labels = [f"in{j}" for j in range(len(inputs))]
        self.branches.append(BranchSite(layer.name, dict(zip(labels, inputs))))

    def _table(self, layer, out, value) -> None:
        if _rank(out) is None or tuple(out.shape[1:]) != tuple(value.shape):
            return
        table = ops.stop_gradient(value)
        content = ops.stop_gradient(_head(out)) - table[None]
        self.branches.append(BranchSite(layer.name, {"content": content, "position": table}))


def site_arrays(attention: list[AttentionSite], branches: list[BranchSite]):
    """The sites' tensors as nested lists and dicts, and the function that makes the sites again from them.

    What a JAX step's differentiated function can hand out through ``has_aux`` (the
    sites' names are no arrays, so they stay with the function).
    """
    arrays = ([(site.probs, site.pad, site.masked) for site in attention], [site.tensors for site in branches])
    names = [site.site for site in branches]

    def rebuild(arrays) -> tuple[list[AttentionSite], list[BranchSite]]:
        attention, branches = arrays
        return ([AttentionSite(*each) for each in attention],
                [BranchSite(name, dict(tensors)) for name, tensors in zip(names, branches)])

    return arrays, rebuild


def _spaced_queries(layer, query, mask) -> tuple:
    """At most :data:`QUERIES_MEASURED` query positions, evenly spaced, of a layer attending over one axis (a
    query of known length), and the mask's rows for them (a mask that broadcasts over the queries as it is)."""
    length = query.shape[1] if len(getattr(layer, "_attention_axes", ())) == 1 else None
    if not isinstance(length, int) or length <= QUERIES_MEASURED:
        return query, mask
    stride = -(-length // QUERIES_MEASURED)
    if mask is not None and len(mask.shape) >= 3 and mask.shape[1] == length:
        mask = mask[:, ::stride]
    return query[:, ::stride], mask


def _rank(t) -> int | None:
    """The number of axes of a tensor of any backend, or None (not a tensor, or its rank unknown when traced)."""
    if not ops.is_tensor(t):
        return None
    try:
        return len(t.shape)
    except (TypeError, ValueError):  # a TensorFlow tensor of unknown rank
        return None


def _layers(model) -> list:
    """Every layer inside ``model`` (recursively), each once, model order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]


def _output_layers(model) -> set[int]:
    """ids of the layers that produce the model's outputs (through Dropout and the like)."""
    found = set()
    for tensor in getattr(model, "outputs", None) or []:
        history = getattr(tensor, "_keras_history", None)
        todo = [history.operation] if history is not None else []
        while todo:
            op = todo.pop()
            found.add(id(op))
            if isinstance(op, (keras.layers.Dropout, keras.layers.Activation, keras.layers.Reshape,
                               keras.layers.Flatten)) and not (activation_name(op) == "softmax"):
                for node in getattr(op, "_inbound_nodes", []):
                    todo.extend(t._keras_history.operation for t in node.input_tensors
                                if getattr(t, "_keras_history", None) is not None)
    if not found:  # a subclassed model: its last layer is the likeliest output
        layers = _layers(model)
        if layers:
            found.add(id(layers[-1]))
    return found


def _input_dependence(model) -> dict[int, bool]:
    """id(KerasTensor) -> whether it depends on one of the model's inputs (functional models only)."""
    inputs = {id(t) for t in getattr(model, "inputs", None) or []}
    memo: dict[int, bool] = {}

    def depends(tensor) -> bool:
        key = id(tensor)
        if key in memo:
            return memo[key]
        memo[key] = True  # cycles cannot happen in a DAG; a provisional value guards recursion
        history = getattr(tensor, "_keras_history", None)
        if key in inputs or history is None:
            memo[key] = key in inputs or history is None
            return memo[key]
        layer = history.operation
        if isinstance(layer, keras.layers.InputLayer):
            memo[key] = True
            return True
        node = layer._inbound_nodes[history.node_index] if history.node_index < len(layer._inbound_nodes) else None
        parents = list(node.input_tensors) if node is not None else []
        memo[key] = any(depends(p) for p in parents) if parents else False
        return memo[key]

    return {"depends": depends}


def _branch_names(layer, dependence) -> dict:
    """For a functional Add: its inputs' producers, and which input (if one) ignores the model's inputs."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes or "depends" not in dependence:
        return {}
    tensors = list(nodes[0].input_tensors)
    names = []
    for t in tensors:
        history = getattr(t, "_keras_history", None)
        names.append(history.operation.name if history is not None else None)
    if any(n is None for n in names) or len(set(names)) != len(names):
        names = None
    constant = [j for j, t in enumerate(tensors) if not dependence["depends"](t)]
    return {"inputs": names, "position": constant[0] if len(constant) == 1 and len(tensors) > 1 else None}


def table_weight(layer):
    """The trainable weight ``layer`` adds to its output whatever the input, or None.

    A candidate has two or more axes and, once the layer has run, the shape of one
    example's output. Where the layer's input shape is known (a layer of a
    functional model), it must also shift the output by exactly a change made to it.
    """
    candidates = [w for w in layer.trainable_weights if len(w.shape) >= 2]
    if len(candidates) == 0:
        return None
    shape = _output_shape(layer)
    if shape is not None:
        candidates = [w for w in candidates if tuple(w.shape) == tuple(shape[1:])]
    if len(candidates) != 1:
        return None
    weight = candidates[0]
    verified = _adds_weight(layer, weight)
    return None if verified is False else weight


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # never called in a functional graph, or called several times
        nodes = getattr(layer, "_inbound_nodes", [])
        if nodes and nodes[0].output_tensors:
            return tuple(nodes[0].output_tensors[0].shape)
    return None


def _adds_weight(layer, weight) -> bool | None:
    """Whether adding d to ``weight`` adds exactly d to the layer's output (None: cannot tell)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes or len(nodes[0].input_tensors) != 1:
        return None
    spec = nodes[0].input_tensors[0]
    if any(d is None for d in spec.shape[1:]):
        return None
    x = np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)
    saved = weight.numpy()
    delta = np.random.default_rng(0).standard_normal(saved.shape).astype(saved.dtype)
    try:
        before = np.asarray(layer(x, training=False))
        weight.assign(saved + delta)
        after = np.asarray(layer(x, training=False))
    except Exception:  # noqa: BLE001 - a layer we cannot call alone: fall back to the shape test
        return None
    finally:
        weight.assign(saved)
    return bool(np.allclose(after - before, delta[None], atol=1e-4 * max(1.0, float(np.abs(delta).max()))))
