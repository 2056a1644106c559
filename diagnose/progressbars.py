"""The command line's progress bars (on stderr): over a sweep's runs, and over one run's training steps."""

from __future__ import annotations

import sys

import click

__all__ = ["RunsBar", "StepsBar"]


class RunsBar:
    """A click progress bar over a sweep's runs, fed by its progress callback (nothing when quiet)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def __enter__(self):
        return self

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        if self.bar is None or self.bar.length != event["total"]:  # a new sweep (a proof runs two)
            self.__exit__(None, None, None)
            self.bar = click.progressbar(length=event["total"], label="runs", file=sys.stderr, show_pos=True,
                                         show_eta=True)
            self.bar.__enter__()
            self.bar.update(event["done"] - 1)
        self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
            self.bar = None
        return False


class StepsBar:
    """A click progress bar over training steps, fed by the training loop's callback."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.done, self.last = quiet, None, 0, {}

    def __enter__(self):
        return self

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=event["total_steps"], label="training", file=sys.stderr,
                                         show_pos=True, show_eta=True,
                                         item_show_func=lambda _: self._describe())
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
