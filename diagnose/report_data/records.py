"""The runs a report shows: each with its name for a person, outcome and findings; grouped by variant.

A run inside a study is named by its variant and seed (from the study's manifest);
a run on its own by its directory. Only whole records are read; the others become
one note each, saying why they are left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.findings.proof import proof_line
from diagnose.parallel import fork_map
from diagnose.report_data.verdict_view import Interval, interval, run_outcome

__all__ = ["RunInfo", "VariantInfo", "study_runs", "single_runs", "run_label", "parse_switches"]

# Below this many runs a process, a pool costs more than it saves.
_RUNS_PER_WORKER = 16


@dataclass
class RunInfo:
    """One run with a whole record.

    Attributes:
        id: the run id (a study's) or the directory's name.
        path: the run directory.
        variant: the variant it belongs to (the directory's name outside a study).
        seed: its seed, if known.
        status: the summary's status.
        outcome: the loss the verdict counts for it (None where it has none).
        findings: every finding (``Finding.to_dict()``), in the rules' order.
        problems: what is wrong with the record short of damage (a run that never finished).
        summary: its summary.json.
        config: its config.json.
    """

    id: str
    path: Path
    variant: str
    seed: int | None
    status: str | None
    outcome: float | None
    findings: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # summary.json as written
    config: dict = field(default_factory=dict)  # config.json as written

    @property
    def label(self) -> str:
        return run_label(self.variant, self.seed)

    @property
    def page(self) -> str:
        """The file name of the run's own page in the report."""
        return f"run-{self.id}.html"


@dataclass
class VariantInfo:
    """A variant: its base, its switches, its runs over seeds and their outcome's mean and interval."""

    name: str
    base: str
    switches: tuple[tuple[str, str], ...]
    runs: list[RunInfo]
    entries: list[dict]  # the manifest's entries for it, whole or not (for the counts)

    @property
    def loss(self) -> Interval | None:
        return interval([r.outcome for r in self.runs if r.outcome is not None])

    def count(self, status: str) -> int:
        return sum(e.get("status") == status for e in self.entries)

    def seeds_with(self, finding_id: str) -> int:
        """On how many of its runs a finding fired."""
        return sum(any(f["id"] == finding_id for f in r.findings) for r in self.runs)


def run_label(variant: str, seed: int | None) -> str:
    """'as-posted, seed 2': how a person tells runs apart."""
    return variant if seed is None else f"{variant}, seed {seed}"


def parse_switches(entry: dict) -> tuple[tuple[str, str], ...]:
    """A manifest entry's switches; from its variant's name where the manifest predates the field."""
    if entry.get("switches"):
        return tuple((str(f), str(lv)) for f, lv in entry["switches"])
    if entry.get("factor"):
        return ((entry["factor"], str(entry.get("level"))),)
    _, _, rest = entry["variant"].partition(" | ")
    pairs = [p.strip().split("=", 1) for p in rest.split("+")] if rest else []
    return tuple((p[0], p[1]) for p in pairs if len(p) == 2)


def study_runs(path: Path) -> tuple[dict[str, VariantInfo], list[str]]:
    """Every variant of the study in ``path`` (manifest order) and a note per run left out."""
    manifest = studydir.read_manifest(path)
    variants: dict[str, VariantInfo] = {}
    notes, whole = [], {}
    for e in manifest["runs"]:
        v = variants.setdefault(e["variant"], VariantInfo(e["variant"], e.get("base") or e["variant"],
                                                          parse_switches(e), [], []))
        v.entries.append(e)
        run = studydir.run_path(path, e["id"])
        problems = runrecord.record_problems(run) if run.is_dir() else ["not run yet"]
        if problems:
            notes.append(f"{run_label(e['variant'], e.get('seed'))} (run {e['id']}): {'; '.join(problems)}; "
                         "left out")
        else:
            whole.setdefault(e["id"], run)  # variants of one config share their runs: each is read once
    # Checking a run is ~50 ms of rules; a study has a hundred and more: several processes share them.
    infos = fork_map(lambda item: _run_info(item[1], item[0], "", None), list(whole.items()), _RUNS_PER_WORKER)
    read = dict(zip(whole, infos))
    for e in manifest["runs"]:
        if e["id"] in read:
            variants[e["variant"]].runs.append(dataclasses.replace(read[e["id"]], variant=e["variant"],
                                                                   seed=e.get("seed")))
    for v in variants.values():
        v.runs.sort(key=lambda r: (r.seed is None, r.seed))
    return variants, notes


def single_runs(paths: list[Path]) -> tuple[dict[str, VariantInfo], list[str]]:
    """One variant per run directory (named by its study's variant and seed where it has one).

    Raises:
        ValueError: a path holds no run record.
        DiagnoseError: a record is damaged (checked before anything is written).
    """
    variants: dict[str, VariantInfo] = {}
    notes, ids = [], set()
    for p in paths:
        if not runrecord.is_run_dir(p):
            raise ValueError(runrecord.not_a_record(p))
        problems = runrecord.readable_problems(p, "train it again (diagnose train --force) or leave it out")
        notes += [f"{p.name}: {problem}" for problem in problems]
        entry = studydir.run_entry(p) or {}
        seed = entry.get("seed", (runrecord.read_config(p).get("train") or {}).get("seed"))
        name = run_label(entry["variant"], seed) if entry else p.name
        while name in variants:  # two directories of one name: both shown
            name += "'"
        run_id = p.name if studydir.plain_name(p.name) else "run"  # it names the run's page
        while run_id in ids:
            run_id += "-"
        ids.add(run_id)
        info = _run_info(p, run_id, name, None)
        info.problems = problems
        attach_proof(info.findings, read_proof(p))
        variants[name] = VariantInfo(name, name, (), [info], [{"status": info.status}])
    return variants, notes


def _run_info(run: Path, run_id: str, variant: str, seed: int | None) -> RunInfo:
    from diagnose.findings import check_run

    outcome, status = run_outcome(run)
    findings = [f.to_dict() for f in check_run(run)]
    return RunInfo(run_id, run, variant, seed, status, outcome, findings, [], _summary(run),
                   runrecord.read_config(run))


def _summary(run: Path) -> dict:
    """The run's summary, its final validation accuracy taken from metrics.csv where the summary lacks it
    (a Keras run's record before its summary held one)."""
    summary = runrecord.read_summary(run)
    final = summary.get("final") or {}
    if final.get("val_accuracy") is None and (run / runrecord.METRICS).is_file():
        column = runrecord.read_metrics(run).get("val_accuracy")
        found = column.dropna() if column is not None else ()
        if len(found):
            summary["final"] = {**final, "val_accuracy": float(found.iloc[-1])}
    return summary


def attach_proof(findings: list[dict], proof: dict | None) -> None:
    """Marks each finding a proof tested with its status and sentence (``finding["proof"]``, else None)."""
    tested = {e["id"]: e for e in (proof or {}).get("findings", [])}
    for f in findings:
        entry = tested.get(f["id"])
        f["proof"] = {"status": entry["status"], "line": proof_line(entry)} if entry else None


def read_proof(run: Path) -> dict | None:
    """The proof of a run's findings where it has one (:func:`diagnose.userstudy.prove.read_proof`)."""
    from diagnose.userstudy.prove import read_proof as read

    return read(run)

