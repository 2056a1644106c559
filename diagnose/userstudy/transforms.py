"""Mechanical changes to a freshly built, compiled Keras model and its fit arguments.

A proof tests a finding's fix by applying it to the model the user's builder
returns, before training, without the builder knowing: an output activation set,
the loss or optimizer recompiled with one argument changed, a table or kernels
re-initialised, inputs standardised. Each change is a JSON dict ``{"op": NAME,
**params}`` (so it is part of a run's config and id); :data:`OPS` maps each name to
the function that applies it. Layers are named as the run record names them
(``layer.name``, searched inside nested and subclassed layers too).

Keras 3's functional models run each layer's ``call`` at every call, so a layer's
``activation`` or an Embedding's ``mask_zero`` set after building takes effect; the
model is recompiled only where the loss or the optimizer changes.
"""

from __future__ import annotations

from diagnose.errors import ConfigError

__all__ = ["OPS", "apply_changes"]

# Layers that only drop or reshape: the output layer is found through them.
_PASS = ("Dropout", "Reshape", "Flatten", "Identity")
# A loss named by a string or a function, as the Keras class that takes from_logits and reduction.
_LOSS_ALIASES = {"mse": "MeanSquaredError", "mae": "MeanAbsoluteError", "mape": "MeanAbsolutePercentageError",
                 "msle": "MeanSquaredLogarithmicError"}


def apply_changes(model, fit: dict, changes) -> tuple:
    """Applies ``changes`` in order; returns the (possibly recompiled) model and the fit arguments.

    Raises:
        ConfigError: a change does not apply to this model (no such layer, a schedule
            where a learning rate is scaled...), in one line.
    """
    for change in changes:
        params = {k: v for k, v in change.items() if k != "op"}
        if change.get("op") not in OPS:
            raise ConfigError(f"unknown change op {change.get('op')!r}; valid ops: {', '.join(OPS)}")
        model, fit = OPS[change["op"]](model, fit, **params)
    return model, fit


def _layers(model) -> list:
    return list(model._flatten_layers(include_self=False, recursive=True))


def _layer(model, name: str):
    found = [layer for layer in _layers(model) if layer.name == name]
    if not found:
        raise ConfigError(f"the model has no layer named {name!r}; the run record and the rebuilt model differ")
    return found[0]


def _output_index(model, output: str | None) -> int:
    """The place of the output named ``output`` in the model's outputs (0 when None)."""
    if output is None:
        return 0
    from diagnose.instruments.targets import output_names

    names = output_names(model)
    if output not in names:
        raise ConfigError(f"the model has no output named {output!r} (outputs: {', '.join(names)}); the run record "
                          "and the rebuilt model differ")
    return names.index(output)


def _output_layer(model, output: str | None = None):
    outputs = getattr(model, "outputs", None)
    index = _output_index(model, output)
    history = getattr(outputs[index], "_keras_history", None) if outputs else None
    layer = history.operation if history is not None else None
    while layer is not None and type(layer).__name__ in _PASS:
        inbound = layer._inbound_nodes[0].input_tensors
        layer = inbound[0]._keras_history.operation if inbound else None
    if layer is None or not hasattr(layer, "activation"):
        raise ConfigError(f"cannot find the output layer of {model.name!r} with an activation to change "
                          "(a functional or Sequential model ending in a Dense or Activation layer)")
    return layer


def _recompile(model, optimizer=None, loss=None, output: str | None = None):
    """The model compiled again as it was, with another optimizer or loss (of the output named ``output`` only,
    for a model with several: the others keep theirs)."""
    config = dict(model._compile_config.config)
    config["optimizer"] = optimizer if optimizer is not None else model.optimizer
    if loss is not None and output is not None:
        from diagnose.instruments.targets import output_names

        names, losses = output_names(model), config.get("loss")
        if isinstance(losses, dict):
            losses = {**losses, output: loss}
        elif isinstance(losses, (list, tuple)):
            losses = [loss if i == _output_index(model, output) else each for i, each in enumerate(losses)]
        else:  # one loss for every output: each its own now
            losses = {name: loss if name == output else losses for name in names}
        config["loss"] = losses
    elif loss is not None:
        config["loss"] = loss
    model.compile(**config)
    return model


def _compiled_loss(model, output: str | None):
    """The loss the model was compiled with (of the output named ``output``, for a model with several)."""
    from diagnose.instruments.targets import of_output

    loss = model._compile_config.config.get("loss")
    return loss if output is None else of_output(loss, _output_index(model, output), output)


def _optimizer_with(model, **changes):
    """A new optimizer of the model's class, from its config with ``changes`` (not yet built: no state)."""
    return type(model.optimizer).from_config({**model.optimizer.get_config(), **changes})


def learning_rate(model, fit, factor: float):
    """The optimizer's learning rate times ``factor``."""
    rate = model.optimizer.get_config().get("learning_rate")
    if not isinstance(rate, (int, float)):
        raise ConfigError("the learning rate is a schedule; scale it in your builder (a setting) rather than "
                          "by a mechanical change")
    return _recompile(model, _optimizer_with(model, learning_rate=float(rate) * float(factor))), fit


def global_clipnorm(model, fit, norm: float):
    """Gradients clipped by their global norm at ``norm`` (per-tensor clipping and clipvalue off)."""
    return _recompile(model, _optimizer_with(model, global_clipnorm=float(norm), clipnorm=None,
                                             clipvalue=None)), fit


def _loss_object(model, output: str | None = None):
    import keras

    loss = _compiled_loss(model, output)
    if isinstance(loss, keras.losses.Loss) and type(loss).__name__ != "LossFunctionWrapper":
        return loss
    name = loss if isinstance(loss, str) else getattr(getattr(loss, "fn", loss), "__name__", "")
    cls_name = _LOSS_ALIASES.get(name) or "".join(part.capitalize() for part in str(name).split("_"))
    cls = getattr(keras.losses, cls_name, None)
    if cls is None:
        raise ConfigError(f"the loss {name!r} is not one of Keras' own; change its arguments in your builder")
    return cls()


def from_logits(model, fit, output: str | None = None):
    """The loss (of the output named ``output``) reads logits (``from_logits=True``): for a linear output under
    a cross-entropy."""
    loss = _loss_object(model, output)
    return _recompile(model, loss=type(loss).from_config({**loss.get_config(), "from_logits": True}),
                      output=output), fit


def loss_reduction(model, fit, reduction: str, output: str | None = None):
    """The loss (of the output named ``output``) reduced over the batch by ``reduction`` ("sum" or
    "sum_over_batch_size")."""
    loss = _loss_object(model, output)
    return _recompile(model, loss=type(loss).from_config({**loss.get_config(), "reduction": reduction}),
                      output=output), fit


def output_activation(model, fit, activation: str, output: str | None = None):
    """The output layer's activation (of the output named ``output``) set to ``activation`` ("softmax",
    "sigmoid")."""
    import keras

    _output_layer(model, output).activation = keras.activations.get(activation)
    return model, fit


def hidden_activation(model, fit, layers: list, activation: str):
    """The activation of the named hidden layers set to ``activation``."""
    import keras

    for name in layers:
        _layer(model, name).activation = keras.activations.get(activation)
    return model, fit


def reinit_kernels(model, fit, layers: list):
    """Every kernel (two or more axes) of the named layers drawn again from Glorot uniform, and every
    embedding table from uniform(-0.05, 0.05): Keras' defaults."""
    import keras

    for name in layers:
        layer = _layer(model, name)
        for weight in layer.trainable_weights:
            leaf = weight.path.rsplit("/", 1)[-1]
            if len(weight.shape) < 2:
                continue
            if leaf.endswith("kernel"):
                weight.assign(keras.initializers.GlorotUniform()(weight.shape, dtype=weight.dtype))
            elif leaf == "embeddings":  # Keras' own default for a table
                weight.assign(keras.initializers.RandomUniform(-0.05, 0.05)(weight.shape, dtype=weight.dtype))
    return model, fit


def reinit_table(model, fit, sites: list, stddev: float):
    """The table each named layer adds to its output (a position encoding) drawn again from N(0, stddev)."""
    import keras

    from diagnose.instruments.taps import table_weight

    for name in sites:
        weight = table_weight(_layer(model, name))
        if weight is None:
            raise ConfigError(f"layer {name!r} adds no table of its own that could be re-initialised")
        weight.assign(keras.initializers.RandomNormal(stddev=float(stddev))(weight.shape, dtype=weight.dtype))
    return model, fit


def mask_zero(model, fit, layers: list):
    """The named Embedding layers mask id 0 (``mask_zero=True``), so recurrent layers skip the padding."""
    for name in layers:
        layer = _layer(model, name)
        layer.mask_zero = True
        layer.supports_masking = True
    return model, fit


def standardize_inputs(model, fit, inputs: list, positions: list | None = None):
    """The named inputs standardised per feature (last axis) with the training data's mean and spread.

    ``positions`` (the inputs' places in the model's input order, as recorded) find an input
    whose name the rebuilt model does not have: Keras names an unnamed input after the models
    built before it in the process ("input_layer_1" in the user's session, "input_layer" here).
    """
    import numpy as np
    import tensorflow as tf

    if isinstance(fit.get("x"), tf.data.Dataset):
        raise ConfigError("inputs can be standardised mechanically only when the data function returns arrays")
    from diagnose.instruments.describe import input_names

    names = input_names(model)  # as the record's input_rms/<name> columns name them

    def named(x):
        if isinstance(x, dict):
            return dict(x)
        flat = list(x) if isinstance(x, (list, tuple)) else [x]
        keys = names if len(names) == len(flat) else [f"in{i}" for i in range(len(flat))]
        return dict(zip(keys, flat))

    def rebuilt(x, values):
        if isinstance(x, dict):
            return values
        flat = list(values.values())
        return type(x)(flat) if isinstance(x, (list, tuple)) else flat[0]

    train = named(fit["x"])
    keys = list(train)
    if positions is not None and len(positions) == len(inputs):
        inputs = [name if name in train or not 0 <= int(place) < len(keys) else keys[int(place)]
                  for name, place in zip(inputs, positions)]
    stats = {}
    for name in inputs:
        if name not in train:
            raise ConfigError(f"the data has no input named {name!r} (inputs: {', '.join(train)})")
        a = np.asarray(train[name], dtype=np.float64)
        axes = tuple(range(a.ndim - 1)) or (0,)
        stats[name] = (a.mean(axis=axes), np.maximum(a.std(axis=axes), 1e-12))

    def scaled(x):
        values = named(x)
        for name, (mean, sd) in stats.items():
            values[name] = ((np.asarray(values[name], dtype=np.float64) - mean) / sd).astype(np.float32)
        return rebuilt(x, values)

    fit = dict(fit)
    fit["x"] = scaled(fit["x"])
    valid = fit.get("validation_data")
    if isinstance(valid, (tuple, list)):
        fit["validation_data"] = (scaled(valid[0]), *valid[1:])
    if fit.get("probe") is not None:
        fit["probe"] = (scaled(fit["probe"][0]), fit["probe"][1])
    return model, fit


def loss(model, fit, loss: str, output: str | None = None):
    """The model recompiled with another of Keras' losses (by name; for the output named ``output`` only, of
    several), everything else as compiled."""
    import keras

    try:
        keras.losses.get(loss)
    except ValueError:
        raise ConfigError(f"{loss!r} is not a Keras loss name") from None
    metrics = model._compile_config.config.get("metrics")
    model = _recompile(model, loss=loss, output=output)
    if metrics:  # "accuracy" means another accuracy under another loss: Keras resolves it again
        model.compile(**{**model._compile_config.config, "metrics": metrics})
    return model, fit


def dropout_rate(model, fit, layers: dict):
    """The named layers' dropout rates set (``{layer: {attribute: rate}}``: ``rate``, ``recurrent_dropout``...)."""
    for name, rates in layers.items():
        layer = _layer(model, name)
        for attribute, rate in rates.items():
            if not hasattr(layer, attribute):
                raise ConfigError(f"layer {name!r} has no dropout setting {attribute!r}")
            setattr(layer, attribute, float(rate))
            cell = getattr(layer, "cell", None)  # a recurrent layer keeps its rates on its cell
            if cell is not None and hasattr(cell, attribute):
                setattr(cell, attribute, float(rate))
    return model, fit


def unfreeze(model, fit, layers: list):
    """The named layers trainable again (the model recompiled, as Keras asks after a change of trainable)."""
    for name in layers:
        _layer(model, name).trainable = True
    return _recompile(model), fit


def fit_setting(model, fit, **settings):
    """``fit`` arguments changed: ``epochs`` (a factor, ``epochs_factor``), ``batch_size``, ``class_weight``
    ("balanced": each class weighted by n / (classes * its count) in the training targets)."""
    import numpy as np

    fit = dict(fit)
    if "epochs_factor" in settings:
        fit["epochs"] = int(round((fit.get("epochs") or 1) * float(settings["epochs_factor"])))
    if "batch_size" in settings:
        fit["batch_size"] = int(settings["batch_size"])
    if settings.get("class_weight") == "balanced":
        y = fit.get("y")
        if y is None or not hasattr(y, "shape"):
            raise ConfigError("classes can be weighted mechanically only when the data function returns arrays")
        y = np.asarray(y)
        labels = y.reshape(len(y), -1).argmax(axis=1) if y.ndim >= 2 and y.shape[-1] > 1 else \
            np.rint(y.reshape(-1)).astype(np.int64)
        counts = np.bincount(labels)
        present = np.flatnonzero(counts)
        fit["class_weight"] = {int(c): float(len(labels) / (len(present) * counts[c])) for c in present}
    return model, fit


def standardize_targets(model, fit, output: str | None = None):
    """The targets (of the output named ``output``, for a model with several: a dict by output name or a list
    in their order) standardised with the training targets' mean and spread (training, validation and probe):
    the loss is then in other units, so a proof judges this by the task's error (1 - R^2 is unit-free)."""
    import numpy as np

    index = _output_index(model, output) if output is not None else None
    y = fit.get("y")
    own = y if index is None else y.get(output) if isinstance(y, dict) else \
        y[index] if isinstance(y, (list, tuple)) and index < len(y) else None
    if own is None or not hasattr(own, "shape"):
        raise ConfigError("targets can be standardised mechanically only when the data function returns arrays")
    own = np.asarray(own, dtype=np.float64)
    mean, sd = own.mean(axis=0), np.maximum(own.std(axis=0), 1e-12)

    def standardised(values):
        return ((np.asarray(values, dtype=np.float64) - mean) / sd).astype(np.float32)

    def scaled(values):
        if index is None:
            return standardised(values)
        if isinstance(values, dict):
            return {**values, output: standardised(values[output])}
        return type(values)(standardised(v) if i == index else v for i, v in enumerate(values))

    fit = dict(fit)
    fit["y"] = scaled(y)
    valid = fit.get("validation_data")
    if isinstance(valid, (tuple, list)) and len(valid) >= 2:
        fit["validation_data"] = (valid[0], scaled(valid[1]), *valid[2:])
    if fit.get("probe") is not None:
        fit["probe"] = (fit["probe"][0], scaled(fit["probe"][1]))
    return model, fit


def adapt(model, fit, layers: list):
    """The named preprocessing layers adapted on the training inputs they read (a layer reading a model
    input directly, or the model's only input)."""
    import numpy as np

    x = fit.get("x")
    if x is None or not all(hasattr(a, "shape") for a in _flat(x)):
        raise ConfigError("a preprocessing layer can be adapted mechanically only when the data function returns "
                          "arrays")
    inputs = list(getattr(model, "inputs", None) or [])
    flat = _flat(x)
    for name in layers:
        layer = _layer(model, name)
        data = None
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                if any(tensor is t for t in inputs):
                    position = next(i for i, t in enumerate(inputs) if t is tensor)
                    data = x[tensor.name] if isinstance(x, dict) and tensor.name in x else flat[position]
        if data is None and len(flat) == 1:
            data = flat[0]
        if data is None:
            raise ConfigError(f"layer {name!r} does not read a model input directly; adapt it in your builder")
        try:
            layer.adapt(np.asarray(data))
        except ValueError:
            # A lookup given a static vocabulary cannot adapt: it is given the training data's own, by frequency.
            if not hasattr(layer, "set_vocabulary"):
                raise
            values, counts = np.unique(np.asarray(data).reshape(-1), return_counts=True)
            reserved = {getattr(layer, "mask_token", None), getattr(layer, "oov_token", None)}
            vocabulary = [v for v in values[np.argsort(-counts, kind="stable")] if v not in reserved]
            limit = getattr(layer, "max_tokens", None)
            layer.set_vocabulary(vocabulary[: limit - layer.num_oov_indices - (layer.mask_token is not None)]
                                 if limit else vocabulary)
    return model, fit


def all_of(model, fit, changes: list):
    """Several changes applied in order, as one (a fix in two parts)."""
    return apply_changes(model, fit, changes)


def _flat(x) -> list:
    if isinstance(x, dict):
        return list(x.values())
    return list(x) if isinstance(x, (list, tuple)) else [x]


OPS = {"learning_rate": learning_rate, "global_clipnorm": global_clipnorm, "from_logits": from_logits,
       "loss_reduction": loss_reduction, "output_activation": output_activation,
       "hidden_activation": hidden_activation, "reinit_kernels": reinit_kernels, "reinit_table": reinit_table,
       "mask_zero": mask_zero, "standardize_inputs": standardize_inputs, "loss": loss,
       "dropout_rate": dropout_rate, "unfreeze": unfreeze, "fit": fit_setting,
       "adapt": adapt, "all": all_of, "standardize_targets": standardize_targets}
