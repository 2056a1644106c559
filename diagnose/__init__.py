"""diagnose: why does my Keras model not converge? Instruments, counterfactual ablations, verdicts."""

__version__ = "0.1.0"

from diagnose.runrecord import load_run  # noqa: E402

__all__ = ["__version__", "load_run"]
