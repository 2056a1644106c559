"""Instruments: what explains convergence, measured inside the compiled train step.

:mod:`~diagnose.instruments.registry` lists the instrument families, each declared
once with what it reads and the columns it writes; both train steps (the built-in
MemN2N's and :func:`~diagnose.instruments.wrapper.instrument` for any Keras model)
feed them the same kinds of tensors.
"""
