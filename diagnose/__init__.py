"""diagnose: why does my Keras model not converge? Instruments, counterfactual ablations, verdicts."""

__version__ = "0.1.0"
