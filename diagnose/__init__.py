"""diagnose: why does my Keras model not converge? Instruments, counterfactual ablations, verdicts."""

from typing import TYPE_CHECKING

from diagnose._version import __version__

from diagnose.runrecord import load_run

if TYPE_CHECKING:  # what a type checker sees of the names loaded on first use below (the package ships py.typed)
    from diagnose.instruments.monitor import Monitor
    from diagnose.instruments.wrapper import instrument
    from diagnose.userstudy.api import study
    from diagnose.userstudy.check import check
    from diagnose.userstudy.prove import prove, prove_run

__all__ = ["__version__", "load_run", "instrument", "Monitor", "check", "study", "prove", "prove_run"]


def __getattr__(name):
    # instrument, Monitor, check, study and prove need TensorFlow; load it only when they are used.
    if name == "instrument":
        from diagnose.instruments.wrapper import instrument

        return instrument
    if name == "Monitor":
        from diagnose.instruments.monitor import Monitor

        return Monitor
    if name == "check":
        from diagnose.userstudy.check import check

        return check
    if name == "study":
        from diagnose.userstudy.api import study

        return study
    if name in ("prove", "prove_run"):
        from diagnose.userstudy import prove

        return getattr(prove, name)
    raise AttributeError(f"module 'diagnose' has no attribute {name!r}")
