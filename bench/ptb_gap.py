"""The whole gap on real text: the default study on Penn Treebank (2,000 words) and the fix it names.

Runs `diagnose run-ablation` on the default factors, sizes and budget with the
corpus switched to PTB, keeping its 2,000 most frequent words (the rest <unk>),
into --out (resumable: the same command again goes on where it stopped). Then reads
the verdict: the smallest fix, what each of its switches does alone, their
interaction, and the residual against the paper model. Prints them and writes
bench/results/ptb_gap.json.

    python bench/ptb_gap.py [--corpus DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from diagnose import studydir  # noqa: E402
from diagnose.findings.verdict_types import Fix, read_verdict  # noqa: E402

VOCAB = 2000  # the setting: big enough to be real text, small enough for minutes of runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None, help="PTB directory (default: ../shared/data/ptb beside the checkout)")
    ap.add_argument("--out", default="ablations/ptb-gap", help="study directory (resumable)")
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    corpus = common.ptb_path(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "ptb-gap.toml"
        spec.write_text(f'[study]\nname = "ptb-gap"\n\n[corpus]\npath = {json.dumps(str(corpus))}\n'
                        f'max_vocab = {VOCAB}\n', encoding="utf-8")
        cmd = [sys.executable, "-m", "diagnose.cli", "run-ablation", str(spec), "--out", args.out, "--quiet",
               "--no-report"] + (["--jobs", str(args.jobs)] if args.jobs else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run-ablation failed: {proc.stderr.strip()}")
    verdict = read_verdict(Path(args.out))
    manifest = studydir.read_manifest(Path(args.out))
    factors = {f.factor: f for f in verdict.factors}
    fix = verdict.smallest_fix
    gap = verdict.gap
    result = {
        "corpus": f"PTB, {VOCAB} words", "wall_time_s": wall, "runs": manifest["totals"],
        "rounds": verdict.follow_up_rounds,
        "gap": {"effect": gap.mean, "ci": [gap.lo, gap.hi], "n": gap.n},
        "alone": {name: {"share_closed": factors[name].share_closed, "share_opened": factors[name].share_opened,
                         "significant": factors[name].significant}
                  for name in ("output", "loss_reduction") if name in factors},
        "smallest_fix": _fix(fix),
        "combinations_tried": [c.variant for c in verdict.combinations if c.is_fix_candidate],
        "verdict": proc.stdout.split("\nverdict: ", 1)[-1].splitlines(),
    }
    print("verdict: " + "\n".join(result["verdict"]))
    print(f"-> {common.write_result('ptb_gap', result)}")


def _fix(fix: Fix | None) -> dict:
    """The smallest fix as the result file has shown it (every key None without a fix)."""
    if fix is None:
        return dict.fromkeys(("switches", "share_closed", "effect", "ci", "n", "reaches", "stable", "confident",
                              "residual", "interaction", "parts"))
    many = len(fix.switches) > 1
    return {"switches": list(fix.switches), "share_closed": fix.share_closed, "effect": fix.effect.mean,
            "ci": [fix.effect.lo, fix.effect.hi], "n": fix.effect.n, "reaches": fix.reaches, "stable": fix.stable,
            "confident": fix.confident, "residual": fix.residual.to_json(),
            "interaction": fix.interaction.to_json() if many and fix.interaction else None,
            "parts": [p.to_json() for p in fix.parts] if many else None}


if __name__ == "__main__":
    main()
