"""The question's own functional model on PTB, instrumented and checked.

Builds the model exactly as posted (models/question.py), wraps it with
``diagnose.instrument`` without touching its code, trains it briefly on PTB windows
with ``diagnose.Monitor`` and prints the findings of ``diagnose check`` on the
record. Writes bench/results/question_model.json.

    python bench/question_model.py --corpus ../shared/data/ptb --steps 600
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="PTB directory")
    ap.add_argument("--steps", type=int, default=600, help="training batches")
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--embed-dim", type=int, default=150)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "question_model.json"))
    args = ap.parse_args()

    import diagnose
    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from diagnose.memn2n.data import load_text_corpus, windows
    from diagnose.findings import check_run
    from diagnose.runrecord import write_json
    from diagnose.models.question import build_question_model

    t0 = time.perf_counter()
    corpus = load_text_corpus(args.corpus, memory_size=args.seq_len)
    V, B = corpus.vocab_size, 128
    keras.utils.set_random_seed(0)
    model = build_question_model(V, args.seq_len, args.embed_dim)
    wrapped = diagnose.instrument(model)
    rng = np.random.default_rng(0)
    pos = rng.permutation(corpus.num_windows("train"))[: args.steps * B].astype(np.int64)

    def batches():
        for i in range(args.steps):
            w, t = windows(corpus.train, args.seq_len, pos[i * B:(i + 1) * B])
            q = np.full((len(t), args.embed_dim), 0.1, np.float32)
            yield (w, q), keras.ops.one_hot(t, V)

    import tensorflow as tf

    data = tf.data.Dataset.from_generator(
        batches, output_signature=((tf.TensorSpec((None, args.seq_len), tf.int32),
                                    tf.TensorSpec((None, args.embed_dim), tf.float32)),
                                   tf.TensorSpec((None, V), tf.float32)))
    pw, pt = windows(corpus.train, args.seq_len, np.arange(B))
    probe = ([pw, np.full((B, args.embed_dim), 0.1, np.float32)], np.eye(V, dtype=np.float32)[pt])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "question"
        monitor = diagnose.Monitor(run, log_every=50, probe=probe, probe_every=200, tensorboard=False,
                                   baselines={"ln_vocab": math.log(V),
                                              "unigram_entropy": corpus.stats["unigram_entropy"]})
        wrapped.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[monitor])
        findings = check_run(run)
        metrics = diagnose.load_run(run, tidy=False)
    last = metrics.dropna(subset=["loss"]).iloc[-1]
    result = {"date": time.strftime("%Y-%m-%d"), "steps": args.steps, "vocab": V,
              "final_train_loss": float(last["loss"]), "unigram_entropy": corpus.stats["unigram_entropy"],
              "ln_vocab": math.log(V), "findings": [{"id": f.id, "kind": f.kind, "severity": f.severity}
                                                    for f in findings],
              "wall_time_s": time.perf_counter() - t0}
    print(f"{args.steps} steps: train loss {result['final_train_loss']:.3f} "
          f"(unigram {result['unigram_entropy']:.3f}, ln V {result['ln_vocab']:.3f})")
    for f in findings:
        print(f"  [{f.kind}/{f.severity}] {f.id}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
