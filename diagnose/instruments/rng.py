"""Keeping a model's random state as training left it while an instrument runs the model.

A layer that draws random numbers in ``call`` whatever ``training`` says (a VAE's
sampling layer, ``keras.random.normal(seed=self.seed_generator)``) moves its
``SeedGenerator`` on at every forward pass, so a probe's extra pass would change every
draw training makes after it. The generators' states are variables of the model
(``.../seed_generator_state``); they are read before the instrument's pass and put
back after it, so the instrumented run draws what plain ``fit`` draws.
"""

from __future__ import annotations

import contextlib

__all__ = ["random_state_kept", "seed_states"]


def seed_states(model) -> list:
    """The variables holding ``model``'s seed generators' states (a walk over all of its variables: found once
    a fit by a caller that keeps them, as a probe's every call would otherwise walk them again)."""
    return [v for v in getattr(model, "variables", []) if v.path.rsplit("/", 1)[-1] == "seed_generator_state"]


@contextlib.contextmanager
def random_state_kept(model, states: list | None = None):
    """Runs the block, then puts every seed generator of ``model`` back where it was (``states``: its
    :func:`seed_states`, where the caller has them)."""
    states = seed_states(model) if states is None else states
    saved = [v.numpy() for v in states]
    try:
        yield
    finally:
        for variable, value in zip(states, saved):
            variable.assign(value)
