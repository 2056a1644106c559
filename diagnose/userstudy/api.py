"""``diagnose.study``: a study of the user's own Keras model from Python, as a TOML spec would give it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from diagnose.findings.verdict import format_verdict
from diagnose import refs
from diagnose.findings.verdict_types import Verdict
from diagnose.progress import SweepProgress
from diagnose.userstudy.spec import build_keras_spec

__all__ = ["study", "StudyResult"]


@dataclass(frozen=True)
class StudyResult:
    """Where a study's records are, its manifest and its verdict (``str()`` gives the verdict's text)."""

    dir: Path
    manifest: dict
    verdict: Verdict

    def __str__(self) -> str:
        return format_verdict(self.verdict)


def study(builder: refs.Builder, data: refs.DataFn, *, bases: dict | None = None, factors: dict | None = None,
          combos: dict | None = None, seeds: int | Sequence[int] = 3, max_seeds: int | None = None,
          fit: dict | None = None, monitor: dict | None = None,
          reference: str | None = None, name: str | None = None, out: str | os.PathLike | None = None,
          jobs: int | None = None, executor: str = "local", ray_address: str | None = None,
          progress: Callable[[dict], None] | None = None, force: bool = False, verbose: int = 1) -> StudyResult:
    """Runs (or resumes) a study of ``builder``'s model; the arguments are the TOML spec's sections.

    Args:
        builder: a function (or ``"module:function"``) taking a settings dict and returning a
            compiled keras.Model.
        data: a function (or reference) returning ``(train, valid)`` or ``model.fit`` arguments.
        bases: base name -> settings (default: one base, ``model``, with no settings).
        factors: factor -> a list of values of the setting of that name, or {level: settings}.
        combos: label -> {"base": name, factor: level, ...}.
        seeds: a count or a list of seeds.
        max_seeds: the most seeds a variant gets where the verdict finds an interval
            inconclusive and adds seeds (default: the built-in study's cap).
        fit, monitor: ``model.fit`` and ``diagnose.Monitor`` arguments for every run.
        reference: the base that works, when there are two: the verdict explains the gap.
        name: the study's name (default: the builder's); ``out`` defaults to ablations/<name>.
        jobs, executor, ray_address: where runs train ("local" processes, "inline" in this
            process, or "ray"); a builder only this process knows always trains here.
        progress: called after each run with ``{"done", "total", "before", "entry"}``
            (see :func:`~diagnose.ablation.sweep.run_sweep`).
        force: replace another study in ``out`` (the runs both share are kept).
        verbose: 0 shows nothing; 1 (the default) shows the runs as ``diagnose run-ablation``
            does: a bar on a terminal, else a line per finished run.

    Raises:
        ConfigError: anything the TOML spec would refuse, in one line.
    """
    from diagnose.ablation.executors import InlineExecutor, make_executor
    from diagnose.ablation.study import run_study

    raw = {"study": {"builder": refs.to_ref(builder, "builder"), "data": refs.to_ref(data, "data"), "seeds": seeds},
           "bases": bases or {"model": {}}, "factors": factors or {}, "combos": combos or {}, "fit": fit or {},
           "monitor": monitor or {}}
    if name is not None:
        raw["study"]["name"] = name
    if reference is not None:
        raw["study"]["reference"] = reference
    if max_seeds is not None:
        raw["study"]["max_seeds"] = max_seeds
    spec = build_keras_spec(raw)
    runner = InlineExecutor() if spec.local else make_executor(executor, jobs=jobs or os.cpu_count() or 1,
                                                               ray_address=ray_address)
    out = Path(out) if out is not None else Path("ablations") / spec.name
    with runner, SweepProgress(quiet=not verbose) as shown:  # the same workers for every round
        def each_run(event: dict) -> None:
            shown(event)
            if progress is not None:
                progress(event)

        manifest, verdict = run_study(spec, out, runner, progress=each_run, force=force)
    return StudyResult(out, manifest, verdict)
