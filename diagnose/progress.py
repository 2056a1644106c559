"""A sweep's progress for a person: a bar on a terminal, one line per finished run elsewhere.

A progress bar redraws one line in place, which a CI log or ``| tee`` cannot show:
there it stays silent until the end. When stdout is not a terminal, each finished
run is one line instead, named as the report names it (variant and seed).
"""

from __future__ import annotations

import sys

import click

__all__ = ["SweepProgress", "StepsBar", "run_line"]


def run_line(event: dict) -> str:
    """'run 3/40: as-posted | output=softmax, seed 2: completed (4.1 s)' for a sweep's progress event."""
    e = event["entry"]
    text = f"run {event['done']}/{event['total']}: {e['variant']}, seed {e['seed']}: {e['status']}"
    if e.get("wall_time_s") is not None:
        text += f" ({e['wall_time_s']:.1f} s)"
    if e.get("error") and e["status"] != "completed":
        first = str(e["error"]).splitlines()[0] if str(e["error"]) else ""
        text += f": {first[:120]}"
    return text


class SweepProgress:
    """The ``progress`` callback of a sweep (``{"done", "total", "entry"}`` per finished run).

    Args:
        quiet: show nothing.
        lines: one line per run on stdout instead of a bar on stderr (default: when
            stdout is not a terminal).
    """

    def __init__(self, quiet: bool = False, lines: bool | None = None):
        self.quiet = quiet
        self.lines = (not sys.stdout.isatty()) if lines is None else lines
        self.bar = None
        self.done = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        if event["done"] <= self.done:  # a new sweep begins (a proof runs two)
            self.close()
        self.done = event["done"]
        if self.lines:
            click.echo(run_line(event))
            return
        if self.bar is None:
            self.bar = click.progressbar(length=event["total"], label="runs", file=sys.stderr, show_pos=True,
                                         show_eta=True)
            self.bar.__enter__()
            self.bar.update(event["done"] - 1)
        self.bar.length = event["total"]  # a later round of the study adds runs
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class StepsBar:
    """A click progress bar over one run's training steps, fed by the training loop's callback."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.done, self.last = quiet, None, 0, {}

    def __enter__(self):
        return self

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=event["total_steps"], label="training", file=sys.stderr,
                                         show_pos=True, show_eta=True, item_show_func=lambda _: self._describe())
            self.bar.__enter__()
        self.last = event
        self.bar.update(event["step"] - self.done)
        self.done = event["step"]

    def _describe(self) -> str:
        text = f"loss {self.last.get('loss', float('nan')):.3f}"
        if self.last.get("valid_loss") is not None:
            text += f" valid {self.last['valid_loss']:.3f}"
        return text

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
