"""Numbers and names past what the machine can do, given on the command line and in a spec: each refused in
one line (exit 2) before anything is written, or (a batch larger than the corpus, --jobs past the cores)
run as the machine can with a note that says so, and a record that says what ran."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.parallel import cores
from reliability_common import SPEC, Ledger, cli, command_line, descendants

SMALL = ["--synthetic", "topic-copy-small", "--set", "memory_size=6", "--set", "embed_dim=8", "--no-jit", "--quiet"]
# One base, two seeds, 20 steps: the smallest sweep that could start a worker per run.
TWO_RUNS = (SPEC.replace('bases = ["as-posted", "paper"]', 'bases = ["paper"]').replace("steps = 60", "steps = 20")
            .replace("eval_every = 30", "eval_every = 20").replace("probe_every = 30", "probe_every = 20"))


def bad_values(root: Path, study: Path, ledger: Ledger) -> None:
    here = root / "values"
    here.mkdir()

    def train(name, args, *needles):
        ledger.refused(f"train {name}", ["train", *SMALL, *args, "--out", "run"], *needles, cwd=here)

    train(f"--steps {10**23}", ["--steps", 10**23], "more than 100,000,000")
    train("--epochs 1e12", ["--epochs", "1e12"], "give fewer epochs")
    train("--set hops=100000", ["--set", "hops=100000"], "hops=100000 is more than 100")
    train("--seed 2**32", ["--seed", 2**32], "2**32 - 1")
    train("--seed 2**64", ["--seed", 2**64], "2**32 - 1")
    train("--set memory_size=10**9", ["--set", f"memory_size={10**9}"], "give smaller sizes")
    train("--set embed_dim=10**10", ["--set", f"embed_dim={10**10}"], "give smaller sizes")
    train("--synthetic ''", ["--synthetic", ""], "'--synthetic': is empty")
    ledger.refused("train --out ''", ["train", *SMALL, "--steps", "2", "--out", ""], "'--out': is empty", cwd=here)
    spec = here / "spec.toml"
    spec.write_text(TWO_RUNS)
    ledger.refused("run-ablation --out ''", ["run-ablation", spec, "--out", ""], "'--out': is empty", cwd=here)
    ledger.refused(f"run-ablation --seeds {10**11}", ["run-ablation", spec, "--seeds", 10**11], "more than 1000",
                   cwd=here)
    run = next(p for p in sorted((study / studydir.RUNS).iterdir()) if p.is_dir())
    ledger.refused("compare --out ''", ["compare", run, "--out", ""], "'--out': is empty", cwd=here)
    specs = {"seeds = [2**32] in a spec": (TWO_RUNS.replace("seeds = 2", f"seeds = [{2**32}]"), "2**32 - 1"),
             "seeds = [2**64] in a spec": (TWO_RUNS.replace("seeds = 2", f"seeds = [{2**64}]"), "2**32 - 1"),
             "a 300-character study name": (TWO_RUNS.replace('name = "faults"', f'name = "{"n" * 300}"'),
                                            "300 characters"),
             "a 250-character factor name": (TWO_RUNS.replace("output = []", f"[factors.{'f' * 250}]\n"
                                                              "high = { learning_rate = 0.02 }"), "250 characters")}
    for i, (name, (text, needle)) in enumerate(specs.items()):
        (here / f"bad-{i}.toml").write_text(text)
        ledger.refused(f"run-ablation with {name}", ["run-ablation", f"bad-{i}.toml", "--quiet", "--no-report"],
                       needle, cwd=here)
    cut = shutil.copytree(run, root / "cut-run")
    metrics = cut / runrecord.METRICS
    metrics.write_bytes(metrics.read_bytes()[:-9])
    ledger.refused("compare on a cut-off metrics.csv", ["compare", cut, "--out", here / "c.png"], "cut off")
    (here / "a-file").write_text("a file, not a directory\n")
    ledger.refused("compare --out under a file", ["compare", run, "--out", here / "a-file" / "c.png"],
                   "which is a file")
    batch_larger_than_corpus(here, ledger)
    jobs_past_the_cores(here, spec, ledger)


def batch_larger_than_corpus(here: Path, ledger: Ledger) -> None:
    """Trains (2 steps), on the whole corpus a step; config.json must say the batch it trained on."""
    code, out, err = cli("train", *SMALL, "--steps", "2", "--set", f"batch_size={10**8}", "--out", "big-batch",
                         cwd=here)
    note = next((line for line in (out + err).splitlines() if line.startswith("note: batch_size")), "")
    recorded = json.loads((here / "big-batch" / runrecord.CONFIG).read_text())["model"]["batch_size"] if code == 0 \
        else None
    ok = code == 0 and recorded is not None and recorded < 10**8 and f"records batch_size={recorded})" in note
    ledger.fault(f"train --set batch_size={10**8}, more than the corpus", ok,
                 f"ran with a note; config.json says batch_size={recorded}, the batch trained" if ok
                 else f"exit {code}, config.json batch_size={recorded}: {(out + err).strip()[-300:]}")


def jobs_past_the_cores(here: Path, spec: Path, ledger: Ledger) -> None:
    """A two-run sweep with --jobs 1000000: at most a worker per core (and per run), with a note."""
    proc = cli("run-ablation", spec, "--out", here / "many-jobs", "--jobs", "1000000", "--no-report",
               "--no-follow-up", "--quiet", wait=False)
    most = 0
    while proc.poll() is None:
        workers = [p for p in descendants(proc.pid) if "spawn_main" in command_line(p)]  # the training processes
        most = max(most, len(workers))
        time.sleep(0.05)
    out, err = proc.communicate()
    cap = min(cores(), 2)
    noted = f"--jobs 1000000 is more than the {cores()} cores here" in err
    ok = proc.returncode == 0 and noted and most <= cap
    ledger.fault("run-ablation --jobs 1000000", ok,
                 f"a note, and at most {most} workers at once ({cores()} cores, 2 runs)" if ok
                 else f"exit {proc.returncode}, {most} workers at most: {err.strip()[-300:]}")
