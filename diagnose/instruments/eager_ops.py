"""The few ``keras.ops`` the figures taken on every step use (and the per-variable vectors of the sampled
ones), in torch's own ops where Keras runs on PyTorch.

PyTorch runs each op as it comes, and each ``keras.ops`` call first checks its
arguments for symbolic tensors and standardizes their dtypes: several microseconds
an op (13 for a reshape), where torch's own op takes one or two. The classifier's
view of a step and its accuracy run a dozen of them on every step, a few percent of
a small model's step, as do the step's column vector and non-finite flags, and a
sampled step's per-variable figures two a variable.
:func:`every_step_ops` gives the same functions, with the same meaning for the
arguments these callers pass (dtype names, integer axes), as torch's own ops on
PyTorch and as ``keras.ops`` (which traces them into the compiled step) on
TensorFlow and JAX.
"""

from __future__ import annotations

import types

import keras
from keras import ops

__all__ = ["every_step_ops"]


def _torch_ops():
    import torch
    from keras.src.backend.torch.core import to_torch_dtype

    dtypes = {"float32": torch.float32, "int32": torch.int32, "bool": torch.bool}

    def tensor(x):
        return x if isinstance(x, torch.Tensor) else ops.convert_to_tensor(x)

    def cast(x, dtype):
        x = tensor(x)
        dtype = dtypes.get(dtype) or to_torch_dtype(dtype)
        return x if x.dtype == dtype else x.to(dtype)

    def argmax(x, axis=None):  # int32, as keras.ops.argmax (torch's is int64); the first maximum wins ties
        x = tensor(x)
        return torch.argmax(x.to(torch.uint8) if x.dtype == torch.bool else x, dim=axis).to(torch.int32)

    return types.SimpleNamespace(
        convert_to_tensor=tensor, is_tensor=torch.is_tensor, cast=cast, argmax=argmax,
        reshape=lambda x, shape: torch.reshape(tensor(x), shape),
        equal=lambda a, b: torch.eq(tensor(a), b),
        logical_and=lambda a, b: torch.logical_and(tensor(a), b),
        where=lambda c, a, b: torch.where(c, a, b),
        zeros_like=torch.zeros_like, sigmoid=torch.sigmoid,
        stack=lambda xs, axis=0: torch.stack(list(xs), dim=axis),
        sum=lambda x: torch.sum(x), mean=lambda x: torch.mean(x),
        maximum=lambda x, floor: torch.clamp(x, min=floor),
        isfinite=lambda x: torch.isfinite(tensor(x)), all=torch.all, logical_not=torch.logical_not,
        concatenate=lambda xs, axis=0: torch.cat(list(xs), dim=axis))


_OPS = _torch_ops() if keras.backend.backend() == "torch" else ops


def every_step_ops():
    """``keras.ops``, or on PyTorch the same functions (those the module doc lists) in torch's own ops."""
    return _OPS
