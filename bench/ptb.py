"""PTB reproduction: the paper preset (and the question's model as posted) for a budget of epochs.

Trains through the project's one training path with test-split evaluation and a
checkpoint after every epoch, into bench/runs/ptb-PRESET (ignored by git). Run it
again with a larger --epochs and it resumes from the checkpoint, so a long
reproduction can run in pieces. Prints validation and test perplexity per epoch
beside the paper's Table 2 row and writes bench/results/ptb.json.

    python bench/ptb.py --epochs 2                         # paper and as-posted, 2 epochs each
    python bench/ptb.py --epochs 6 --presets paper         # later: 4 more epochs of the paper preset
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import RESULTS, ROOT, ptb_path, write_result

# Sukhbaatar et al. (2015), Table 2, Penn Treebank, MemN2N with 6 hops, memory 100,
# 150 dimensions, after full training (up to 100 epochs with annealing).
PAPER_TABLE2 = {"val_perplexity": 122, "test_perplexity": 115}


def run(preset: str, epochs: float, corpus: Path, out: Path) -> dict:
    from diagnose import runrecord
    from diagnose.memn2n.checkpoint import read_checkpoint
    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
    from diagnose.memn2n.data.load import load_corpus
    from diagnose.memn2n.train import train

    config = make_run_config(preset, data=DataConfig(corpus=str(corpus)),
                             train=TrainConfig(epochs=epochs, eval_test=True, checkpoint=True, log_every=100))
    data = load_corpus(config.data, config.model.memory_size)
    resume = read_checkpoint(out) is not None
    if resume:
        done = read_checkpoint(out)[0]["step"]
        print(f"{preset}: resuming {out.name} from step {done}")
    t0 = time.perf_counter()
    result = train(config, out, corpus=data, resume=resume)
    wall = time.perf_counter() - t0
    metrics = runrecord.read_metrics(out)
    evals = metrics[metrics["val_loss"].notna()]
    test = evals["test_perplexity"] if "test_perplexity" in evals else [float("nan")] * len(evals)
    curve = [{"epoch": round(float(e), 3), "val_perplexity": float(v),
              "test_perplexity": float(t) if t == t else None, "learning_rate": float(lr)}
             for e, v, t, lr in zip(evals["epoch"], evals["val_perplexity"], test, evals["learning_rate"])]
    s = result.summary
    return {"preset": preset, "date": time.strftime("%Y-%m-%d"), "run_dir": str(out.relative_to(ROOT)),
            "status": s["status"], "steps": s["steps"],
            "epochs": s["epochs"], "curve": curve, "samples_per_s": s["samples_per_s"],
            "train_time_s": s["train_time_s"], "wall_time_this_call_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=2.0, help="training budget per preset, in epochs")
    ap.add_argument("--presets", nargs="+", default=["paper", "as-posted"], choices=["paper", "as-posted"])
    ap.add_argument("--corpus", default=None, help="PTB directory (default: ../shared/data/ptb)")
    ap.add_argument("--runs", default=str(ROOT / "bench" / "runs"), help="where the run records go")
    args = ap.parse_args()
    corpus = ptb_path(args.corpus)
    results = [run(p, args.epochs, corpus, Path(args.runs) / f"ptb-{p}") for p in args.presets]
    print(f"{'model':<11}{'epoch':>7}{'valid ppl':>11}{'test ppl':>10}{'lr':>9}")
    for r in results:
        for point in r["curve"]:
            test = f"{point['test_perplexity']:.1f}" if point["test_perplexity"] is not None else "-"
            print(f"{r['preset']:<11}{point['epoch']:>7.2f}{point['val_perplexity']:>11.1f}{test:>10}"
                  f"{point['learning_rate']:>9.4f}")
        rate = f"{r['samples_per_s']:.0f} samples/s this call" if r["samples_per_s"] else "nothing left to train"
        print(f"{r['preset']:<11} {r['status']}, {rate}")
    print(f"{'paper T.2':<11}{'full':>7}{PAPER_TABLE2['val_perplexity']:>11}{PAPER_TABLE2['test_perplexity']:>10}")
    # Presets not run this time keep their earlier entries, so each can be rerun alone.
    earlier = RESULTS / "ptb.json"
    if earlier.is_file():
        ran = {r["preset"] for r in results}
        kept = [r for r in json.loads(earlier.read_text()).get("results", []) if r.get("preset") not in ran]
        results = [r for p in ("paper", "as-posted") for r in results + kept if r["preset"] == p]
    path = write_result("ptb", {"epochs": args.epochs, "paper_table2": PAPER_TABLE2, "results": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
