"""The verdict as a type, declared once: what :func:`~diagnose.findings.verdict.compute_verdict`
returns, what ``verdict.json`` holds, and what the CLI, the report and the proof read, by attribute.

:class:`Verdict` writes itself as the JSON ``verdict.json`` has always held (``to_json``:
the same keys in the same order, so a study's file is the same before and after these
types) and reads itself back (``from_json``), also from a verdict an older version
wrote. Its parts (intervals, effects, factors, the fix, comparisons) are in
:mod:`~diagnose.findings.verdict_entries`; this module exports them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from diagnose import studydir
from diagnose.findings.verdict_entries import (STATUSES, BaseEffect, Cause, Combination, Comparison, Factor, Fix,
                                               FixPart, Interval, SeedBlind, Seeds, Sweep, SwitchEffect, _opt, _tuple)

__all__ = ["Verdict", "read_verdict", "write_verdict", "Interval", "SwitchEffect", "Factor", "Combination",
           "FixPart", "Fix", "Cause", "Comparison", "BaseEffect", "Seeds", "SeedBlind", "Sweep", "STATUSES"]


@dataclass(frozen=True)
class Verdict:
    """The verdict of a study (see :mod:`diagnose.findings.verdict`).

    ``mode`` is ``"gap"`` (a faulty base against a reference: causes, the fix), ``"effects"``
    (no gap to explain: each switch's effect on its base; ``no_gap`` says why where the
    study has both bases) or ``"error"`` (nothing to compare: ``error`` says why).

    Attributes:
        study: the study's name.
        faulty, reference: the two bases of the gap (also of ``no_gap``'s measured one).
        outcome, test, method: what the outcome is, the interval's test, and both with the
            verdict's rules, in words; ``unit``: what the losses are in; ``max_seeds``: the cap.
        margin: within it an effect is negligible (a tenth of the gap).
        means: each variant's mean outcome over seeds.
        gap: faulty - reference, with its status.
        factors, combinations, root_causes, minor_causes, smallest_fix: the gap's explanation.
        effects, bases: each switch's effect on its base (effects mode).
        comparisons: every interval the sentences rest on.
        seeds, baselines, seed_blind: seeds per variant, the corpus' reference losses, and the
            variables the seeds leave fixed (or None).
        follow_up_rounds, follow_up_s, sweeps: what ``run-ablation`` ran after its first sweep
            (None from ``check``, which runs nothing).
        proof: a proof study's proof section (:func:`diagnose.findings.proof.proof_of`), or None.
        divergences: per variant, how its diverged seeds diverged: ``{"at_once", "went_on"}`` counts
            (:func:`~diagnose.findings.verdict_stats.divergence_of`); only variants with either.
    """

    mode: str = "gap"
    study: str | None = None
    error: str | None = None
    faulty: str | None = None
    reference: str | None = None
    outcome: str = ""
    test: str = ""
    max_seeds: int | None = None
    unit: str = "nats"
    method: str = ""
    margin: float | None = None
    means: dict[str, float] = field(default_factory=dict)
    gap: Interval | None = None
    no_gap: str | None = None
    bases: tuple[str, ...] = ()
    factors: tuple[Factor, ...] = ()
    combinations: tuple[Combination, ...] = ()
    root_causes: tuple[Cause, ...] = ()
    minor_causes: tuple[Cause, ...] = ()
    smallest_fix: Fix | None = None
    effects: tuple[BaseEffect, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    seeds: Seeds = field(default_factory=Seeds)
    baselines: dict = field(default_factory=dict)
    seed_blind: SeedBlind | None = None
    follow_up_rounds: int | None = None
    follow_up_s: float | None = None
    sweeps: tuple[Sweep, ...] | None = None
    proof: dict | None = None
    divergences: dict[str, dict] = field(default_factory=dict)

    def factor(self, name: str) -> Factor | None:
        return next((f for f in self.factors if f.factor == name), None)

    def combination(self, variant: str) -> Combination | None:
        return next((c for c in self.combinations if c.variant == variant), None)

    def to_json(self) -> dict:
        """The verdict as ``verdict.json`` holds it."""
        if self.mode == "error":
            out = {"error": self.error, "factors": [], "root_causes": [],
                   "comparisons": [c.to_json() for c in self.comparisons]}
        elif self.mode == "effects":
            out = {"study": self.study, "mode": "effects", "bases": list(self.bases), **self._method(),
                   "means": dict(self.means), "effects": [e.to_json() for e in self.effects],
                   "comparisons": [c.to_json() for c in self.comparisons], "seeds": self.seeds.to_json(),
                   "factors": [], "combinations": [], "root_causes": [], "smallest_fix": None,
                   "baselines": self.baselines}
            if self.no_gap is not None:
                out.update(faulty=self.faulty, reference=self.reference, gap=self.gap.to_json(), no_gap=self.no_gap)
            out["seed_blind"] = self.seed_blind.to_json() if self.seed_blind else None
            if self.divergences:
                out["divergences"] = self.divergences
        else:
            out = {"study": self.study, "faulty": self.faulty, "reference": self.reference, **self._method(),
                   "margin": self.margin, "means": dict(self.means), "gap": self.gap.to_json(),
                   "factors": [f.to_json() for f in self.factors],
                   "combinations": [c.to_json() for c in self.combinations],
                   "root_causes": [c.to_json() for c in self.root_causes],
                   "minor_causes": [c.to_json() for c in self.minor_causes],
                   "smallest_fix": self.smallest_fix.to_json() if self.smallest_fix else None,
                   "comparisons": [c.to_json() for c in self.comparisons], "seeds": self.seeds.to_json(),
                   "baselines": self.baselines,
                   "seed_blind": self.seed_blind.to_json() if self.seed_blind else None}
            if self.divergences:
                out["divergences"] = self.divergences
        if self.follow_up_rounds is not None:
            out["follow_up_rounds"] = self.follow_up_rounds
            if self.follow_up_s is not None:  # only in verdicts written before the timings moved to the manifest
                out["follow_up_s"] = self.follow_up_s
            out["sweeps"] = [s.to_json() for s in self.sweeps or ()]
        if self.proof is not None:
            out["proof"] = self.proof
        return out

    def _method(self) -> dict:
        return {"outcome": self.outcome, "test": self.test, "max_seeds": self.max_seeds, "unit": self.unit,
                "method": self.method}

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        """The verdict ``d`` (a ``verdict.json``'s object) holds; keys it lacks take their defaults."""
        mode = "error" if d.get("error") else "effects" if d.get("mode") == "effects" else "gap"
        sweeps = d.get("sweeps")
        return cls(
            mode=mode, study=d.get("study"), error=d.get("error"), faulty=d.get("faulty"),
            reference=d.get("reference"), outcome=d.get("outcome") or "", test=d.get("test") or "",
            max_seeds=d.get("max_seeds"), unit=d.get("unit") or "nats", method=d.get("method") or "",
            margin=d.get("margin"), means=dict(d.get("means") or {}), gap=_opt(d.get("gap"), Interval),
            no_gap=d.get("no_gap"), bases=_tuple(d.get("bases")), factors=_tuple(d.get("factors"), Factor),
            combinations=_tuple(d.get("combinations"), Combination), root_causes=_tuple(d.get("root_causes"), Cause),
            minor_causes=_tuple(d.get("minor_causes"), Cause), smallest_fix=_opt(d.get("smallest_fix"), Fix),
            effects=_tuple(d.get("effects"), BaseEffect), comparisons=_tuple(d.get("comparisons"), Comparison),
            seeds=Seeds.from_json(d.get("seeds") or {}), baselines=d.get("baselines") or {},
            seed_blind=_opt(d.get("seed_blind"), SeedBlind), follow_up_rounds=d.get("follow_up_rounds"),
            follow_up_s=d.get("follow_up_s"), sweeps=_tuple(sweeps, Sweep) if sweeps is not None else None,
            proof=d.get("proof"), divergences=dict(d.get("divergences") or {}))


def read_verdict(study_dir: str | os.PathLike) -> Verdict | None:
    """The verdict a study's ``verdict.json`` holds, or None when there is none yet."""
    data = studydir.read_verdict(Path(study_dir))
    return Verdict.from_json(data) if data is not None else None


def write_verdict(study_dir: str | os.PathLike, verdict: Verdict) -> None:
    """Writes ``verdict.json`` (atomically)."""
    studydir.write_verdict(Path(study_dir), verdict.to_json())
