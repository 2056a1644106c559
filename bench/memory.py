"""Peak resident memory (RSS) of training the paper preset on PTB and of a full validation pass.

Each measurement runs in a fresh process and reports its own high-water mark
(VmHWM), so one cannot inflate another: the interpreter with TensorFlow imported;
the training path for --steps steps (every instrument on) ending with a
validation pass over all of PTB's validation windows; and that full validation
pass alone. Goal: at most 2 GB. Writes bench/results/memory.json.

    python bench/memory.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile

from common import ptb_path, write_result


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(what: str, corpus: str, steps: int, queue) -> None:
    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    out = {}
    if what != "import":
        from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
        from diagnose.memn2n.data.load import load_corpus

        cfg = make_run_config("paper", data=DataConfig(corpus=corpus),
                              train=TrainConfig(steps=steps, eval_every=steps, eval_at_start=False))
        data = load_corpus(cfg.data, cfg.model.memory_size)
        if what == "train":
            from diagnose.memn2n.train import train

            with tempfile.TemporaryDirectory() as tmp:
                s = train(cfg, tmp, corpus=data).summary
            out = {"steps": s["steps"], "val_perplexity": s["final"]["val_perplexity"]}
        else:
            import dataclasses

            from diagnose.memn2n.steps import MemN2NSteps

            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.vocab_size))
            result = MemN2NSteps(cfg, data).evaluate("valid")
            out = {"windows": data.num_windows("valid"), "val_perplexity": result["perplexity"]}
    queue.put({"what": what, "peak_rss_mb": _peak_rss_mb(), **out})


def measure(what: str, corpus: str, steps: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(what, corpus, steps, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None, help="PTB directory (default: ../shared/data/ptb)")
    ap.add_argument("--steps", type=int, default=300, help="training steps before the validation pass")
    args = ap.parse_args()
    corpus = str(ptb_path(args.corpus))
    results = [measure(w, corpus, args.steps) for w in ("import", "train", "validate")]
    labels = {"import": "python + TensorFlow imported", "train": f"training, {args.steps} steps + full validation",
              "validate": "one full PTB validation pass"}
    print(f"{'process':<45}{'peak RSS MB':>12}")
    for r in results:
        print(f"{labels[r['what']]:<45}{r['peak_rss_mb']:>12.0f}")
    path = write_result("memory", {"goal_mb": 2048, "steps": args.steps, "results": results})
    print(f"-> {path}")
    print(json.dumps({r["what"]: round(r["peak_rss_mb"]) for r in results}))


if __name__ == "__main__":
    main()
