"""A sweep's progress for a person: a bar on a terminal, one line per finished run elsewhere.

A progress bar redraws one line in place, which a CI log or ``| tee`` cannot show:
there it stays silent until the end. When stdout is not a terminal, each finished
run is one line instead, named as the report names it (variant and seed).
"""

from __future__ import annotations

import sys
import time

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
    """The ``progress`` callback of a sweep (``{"done", "total", "before", "entry"}`` per finished run).

    On resume the count goes on from the runs already recorded (a line says how many), and a
    round that adds runs (seeds, or combinations the verdict asked for) says so before its
    first run, so the numbers run on by one and their total is always the one they count to.
    The bar's time left is reckoned from the runs trained since this sweep began, never from
    the runs it found done.

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
        self.total = 0
        self.sweep = None  # (before, total) of the sweep being shown
        self.t0 = time.monotonic()  # when the sweep being shown began (or this object, for the first)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        before = event.get("before", event["done"] - 1)
        if (before, event["total"]) != self.sweep or event["done"] <= self.done:  # a new sweep (a proof runs two)
            self._begin(before, event["total"])
        self.done = event["done"]
        if self.lines:
            click.echo(run_line(event))
            return
        self.bar.update(1)

    def _begin(self, before: int, total: int) -> None:
        """A sweep's first event: a line on where its count starts, a new bar from the runs already done."""
        grew = self.sweep is not None and self.done == self.total == before
        if self.sweep is not None:
            self.t0 = time.monotonic()  # a round: its own runs
        self.close()
        note = (f"{total - before} more runs asked for by the verdict (seeds or combinations): {total} in all"
                if grew else f"resuming: {before} of {total} runs already recorded" if before else None)
        self.sweep, self.total, self.done = (before, total), total, before
        if note:
            click.echo(note, err=not self.lines)
        if not self.lines:
            self.bar = click.progressbar(length=total, label="runs", file=sys.stderr, show_pos=True,
                                         show_eta=False, item_show_func=lambda _: self._eta())
            self.bar.__enter__()
            self.bar.update(before)

    def _eta(self) -> str | None:
        """Time left from the runs trained since this sweep began (resumed runs took no time here)."""
        trained = self.done - self.sweep[0] if self.sweep else 0
        if trained <= 0:
            return None
        left = (time.monotonic() - self.t0) / trained * (self.total - self.done)
        return f"about {_clock(left)} left" if self.done < self.total else None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60:02d}:{seconds % 60:02d}"


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
        if self.last.get("val_loss") is not None:
            text += f" valid {self.last['val_loss']:.3f}"
        return text

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
