"""The user's functions by reference: ``"module:function"``, resolved in whichever process trains a run.

A study names its model builder and its data function as ``"package.module:function"``
so that a run's config (and its id) says which code made it, and a worker process on
this machine or on a Ray node can import them again. The current directory is on the
import path when a reference is resolved, as for ``python -m``.

A function handed over from Python is turned into its reference when it can be
imported by that name; one that cannot (defined in a notebook, in a script run as
``__main__``, or inside another function) is kept in this process under its name, and
its runs train here (:func:`needs_this_process`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import keras

from diagnose.errors import ConfigError

__all__ = ["to_ref", "resolve", "needs_this_process", "is_ref", "Builder", "DataFn"]

# What the public API takes for the user's functions: the function, or its "module:function".
Builder = Callable[[dict], "keras.Model"] | str  # settings -> a compiled keras.Model
DataFn = Callable[[dict], object] | str  # settings -> (train, valid) or model.fit arguments

_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*")
_HERE: dict[str, Callable] = {}  # references that only this process can resolve -> the function


def is_ref(value) -> bool:
    """True for a string shaped like ``"module:function"``."""
    return isinstance(value, str) and bool(_REF.fullmatch(value))


def to_ref(value, what: str) -> str:
    """A ``"module:function"`` reference for ``value`` (a reference already, or a callable).

    Args:
        value: ``"module:function"`` or a function.
        what: what it is, for errors ("builder", "data").

    Raises:
        ConfigError: ``value`` is neither.
    """
    if is_ref(value):
        return value
    if not callable(value):
        raise ConfigError(f"{what} must be a function or 'module:function', got {value!r}")
    ref = f"{getattr(value, '__module__', None) or '__main__'}:{getattr(value, '__qualname__', 'function')}"
    try:
        if _import(ref) is value and not _main_only(ref):
            return ref
    except ConfigError:
        pass
    _HERE[ref] = value
    return ref


def needs_this_process(ref: str) -> bool:
    """True when only this process can resolve ``ref`` (its runs cannot go to worker processes)."""
    return ref in _HERE or _main_only(ref)


def resolve(ref: str, what: str) -> Callable:
    """The function ``ref`` names.

    Raises:
        ConfigError: the module cannot be imported or has no such function, in one line.
    """
    if ref in _HERE:
        return _HERE[ref]
    if not is_ref(ref):
        raise ConfigError(f"{what} {ref!r} is not a reference; write it as 'package.module:function'")
    fn = _import(ref)
    if not callable(fn):
        raise ConfigError(f"{what} '{ref}' is not a function; name the function that builds it")
    return fn


def _main_only(ref: str) -> bool:
    # A script's __main__ and functions nested in others exist only where they were made.
    module, _, name = ref.partition(":")
    return module in ("__main__", "__mp_main__") or "<locals>" in name


def _import(ref: str):
    module_name, _, name = ref.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # 'examples.mine:build' from the project directory, as python -m does
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import '{module_name}' for '{ref}' ({exc}); run from the directory that holds "
                          "it, or put it on PYTHONPATH") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing: say so in one line
        raise ConfigError(f"importing '{module_name}' for '{ref}' raised {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"'{module_name}' has no '{name}' (from '{ref}'); name a function it defines")
        obj = getattr(obj, part)
    return obj
