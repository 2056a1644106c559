"""Hand-written studies for the report's tests: whole run records with instruments, no training.

The default-like study has the default study's shape on a small scale: the
as-posted and paper bases, single switches between them (output, loss reduction,
the temporal encoding at four init scales), and combinations; its verdict is the
real one, computed from these records.
"""

import math
import zlib

from diagnose import runrecord, studydir
from diagnose.findings.verdict import compute_verdict
from diagnose.findings.verdict_types import write_verdict

LN_V = math.log(35)
REFS = {"ln_vocab": LN_V, "unigram_entropy": 3.2, "bayes_floor": 1.3}

# variant -> final validation loss (before seed noise). The story: a summed loss closes most of the gap and a
# softmax output the rest; a unit-scale temporal encoding ("ones") undoes the summed loss's gain.
DEFAULT_LIKE = {
    "as-posted": 4.5, "paper": 1.8,
    "as-posted | output=softmax": 3.6, "as-posted | loss_reduction=sum": 2.5,
    "as-posted | temporal=none": 4.5, "as-posted | temporal=normal": 4.45, "as-posted | temporal=ones": 4.6,
    "paper | output=relu": 4.6, "paper | loss_reduction=mean": 3.5,
    "paper | temporal=none": 1.85, "paper | temporal=uniform": 1.8, "paper | temporal=ones": 4.9,
    "as-posted | loss_reduction=sum + temporal=none": 2.3, "as-posted | loss_reduction=sum + temporal=ones": 5.3,
    "as-posted | loss_reduction=sum + output=softmax": 1.9,
}
# Whose own level a single switch adopts (the manifest's level_of).
OWN = {"as-posted": {"output": "relu", "loss_reduction": "mean", "temporal": "uniform"},
       "paper": {"output": "softmax", "loss_reduction": "sum", "temporal": "normal"}}
# The spec's own contrasts (as the default spec declares them): the summed loss with and without an encoding.
COMBOS = {"sum, no encoding": {"base": "as-posted", "loss_reduction": "sum", "temporal": "none"},
          "sum, ones encoding": {"base": "as-posted", "loss_reduction": "sum", "temporal": "ones"}}
SPEC_FACTORS = {"output": [], "loss_reduction": [], "temporal": ["none", "normal", "uniform", "ones"]}


def noise(variant: str, seed: int) -> float:
    """A small deterministic seed effect, different per variant (so intervals have a width)."""
    return 0.04 * (((zlib.crc32(variant.encode()) + 7 * seed) % 5) - 2)


def switches_of(variant: str) -> list[list[str]]:
    _, _, rest = variant.partition(" | ")
    return [s.strip().split("=") for s in rest.split("+")] if rest else []


def write_run(run, final: float, *, steps: int = 200, position: float | None = 0.05, peak: int | None = None,
              status: str = "completed", extra: dict | None = None) -> None:
    """A whole run record whose loss falls from ln V to ``final``, with every instrument family.

    Args:
        position: the RMS of the position table (None: no temporal encoding).
        peak: the memory slot attention always wins (None: spread with the input).
    """
    rows = []
    for step in range(0, steps + 1, steps // 10):
        frac = step / steps
        row = {"step": step, "epoch": frac, "loss": LN_V + (final - LN_V) * frac ** 0.5 + 0.1,
               "grad_norm/global": 1.0 + frac, "grad_norm/W": 0.5, "grad_norm/A/embedding": 0.2,
               "update_ratio/W": 1e-3, "update_ratio/A/embedding": 5e-4, "attn_entropy/hop1": 0.9 - 0.3 * frac,
               "rms/A/content": 0.05, "out_zero_frac": 0.0, "target_at_floor": 0.0, "max_prob": 0.2 + 0.3 * frac,
               **(extra or {})}
        if position is not None:
            row["rms/A/position"] = position
        if step in (0, steps // 2, steps):
            row["val_loss"] = LN_V + (final - LN_V) * frac ** 0.5
        rows.append(row)
    runrecord.write_metrics(run, rows)
    runrecord.write_config(run, model={"output": "softmax"}, data={}, train={"seed": 0})
    runrecord.write_summary(run, {"status": status, "steps": steps, "final": {"val_loss": final},
                                  "baselines": dict(REFS)})
    attention = []
    for step in (steps // 10, steps):
        counts = [5, 9, 7, 11] if peak is None else [40 if i == peak else 0 for i in range(4)]
        attention.append({"step": step, "hop": 1, **{f"pos{i}": c for i, c in enumerate(counts)}})
    runrecord.write_attention(run, attention)


def default_like_study(path, seeds: int = 2, variants: dict | None = None, verdict: bool = True):
    """Writes a study directory of the default study's shape; returns its path."""
    runs = []
    for variant, loss in (variants or DEFAULT_LIKE).items():
        base = variant.split(" | ")[0]
        switches = switches_of(variant)
        temporal = dict(switches).get("temporal", OWN[base]["temporal"])
        single = len(switches) == 1
        level_of = [b for b in OWN if b != base and single and OWN[b].get(switches[0][0]) == switches[0][1]]
        for seed in range(seeds):
            rid = f"{zlib.crc32(f'{variant}/{seed}'.encode()):08x}{seed:08x}"
            write_run(path / studydir.RUNS / rid, loss + noise(variant, seed),
                      position=None if temporal == "none" else 1.0 if temporal == "ones" else 0.05,
                      peak=3 if temporal == "ones" else None)
            runs.append({"id": rid, "variant": variant, "base": base, "seed": seed, "status": "completed",
                         "factor": switches[0][0] if single else None, "level": switches[0][1] if single else None,
                         "switches": switches, "level_of": level_of})
    studydir.write_manifest(path, {"study": "default-like", "runs": runs, "corpus": {"name": "synthetic:tiny"},
                                   "spec": {"factors": SPEC_FACTORS, "combos": COMBOS},
                                   "totals": {"runs": len(runs), "completed": len(runs), "diverged": 0,
                                              "failed": 0}})
    if verdict:
        write_verdict(path, compute_verdict(path))
    return path
