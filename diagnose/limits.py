"""What this machine can do: the bounds a number the user gives is checked against before anything is written.

Each bound is here once, with why it is that value; the config checks, the spec
checks and the command line read them. A value past a bound is refused in one line
naming the bound and the fix, before a run directory exists and before TensorFlow
allocates anything: a run of 10^23 steps or a table of 10^9 rows is a typing slip,
not a run to start and kill.
"""

from __future__ import annotations

import os

from diagnose.errors import ConfigError

__all__ = ["MAX_STEPS", "MAX_SEED", "MAX_NAME", "check_name", "check_seed", "memory_bytes", "machine_memory",
           "check_run", "capped_jobs"]

# Training steps of one run. The paper's Penn Treebank schedule is about 0.7 million
# steps (100 epochs of ~7,300 batches); 100 million is over a day at the fastest step
# measured here (~1 ms, a tiny model on one core): beyond that, a budget is a slip.
MAX_STEPS = 100_000_000
# The largest seed numpy (np.random.seed) and Keras (keras.utils.set_random_seed) take.
MAX_SEED = 2**32 - 1
# Characters in a study's, a base's, a factor's or a level's name. A name becomes a
# directory (ablations/<name>) and part of the report's file names
# ("suspect-1-<factor>.png", written as ".suspect-1-<factor>.png.tmp.png" first),
# and a file name has at most 255 bytes; 100 leaves room for the rest.
MAX_NAME = 100
# A run is refused when its tensors, estimated from its config, need more than this
# share of the machine's memory: the estimate is rough (TensorFlow's own buffers,
# XLA's scratch and the corpus come on top), and a run that swaps is as good as hung.
MEMORY_SHARE = 0.8


def check_name(what: str, name: str) -> None:
    """Refuses a name too long to name files (:data:`MAX_NAME`), in one line naming it."""
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise ConfigError(f"{what} {name[:24]!r}... is {len(name)} characters long; names become directory and "
                          f"file names, which have at most 255 bytes: give one of at most {MAX_NAME} characters")


def check_seed(what: str, seed: int) -> None:
    """Refuses a seed outside numpy's range, 0 to 2**32 - 1 (the caller checks it is an integer)."""
    if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what}={seed} is outside the seeds numpy and Keras take (0 to 2**32 - 1 = {MAX_SEED}); "
                          "give a smaller seed")


def memory_bytes(model, batch: int, eval_batch: int) -> int:
    """A rough upper estimate of the bytes a MemN2N run's tensors take (float32), from its sizes.

    Weights (every hop's own tables when untied), their gradients and a copy an
    initializer draws; per hop, a batch's memories and their gradients; the logits
    of a batch (training and validation) and their softmax.
    """
    v, m, d, k = model.vocab_size, model.memory_size, model.embed_dim, model.hops
    tables = {"layerwise": 1, "adjacent": k + 1, "untied": 2 * k}.get(model.tying, 2 * k)
    weights = 2 * tables * (v + m) * d + k * d * d + d * v  # A and C (words, slots), H, W
    per_hop = 4 * batch * m * d + 2 * eval_batch * m * d  # memories m and c, and in training their gradients
    logits = 3 * max(batch, eval_batch) * v
    return 4 * (3 * weights + (k + 1) * per_hop + logits)


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its container's limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                limit = int(fh.read().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        total = limit if total is None else min(total, limit)
    return total


def check_run(config, n_windows: int) -> None:
    """Refuses a built-in run whose budget or tensors the machine cannot take, before anything is written.

    Args:
        config: a :class:`~diagnose.memn2n.config.RunConfig`, its vocabulary the corpus's.
        n_windows: the corpus's training windows (a batch is at most that many).

    Raises:
        ConfigError: more than :data:`MAX_STEPS` steps (an epochs budget included), or
            tensors estimated at more than :data:`MEMORY_SHARE` of the machine's memory.
    """
    train, model = config.train, config.model
    batch = min(model.batch_size, n_windows)
    if train.steps is None:
        steps = train.epochs * max(1, n_windows // batch)
        if steps > MAX_STEPS:
            raise ConfigError(f"epochs={train.epochs:g} is {steps:.3g} steps of this corpus, more than {MAX_STEPS:,} "
                              "(over a day at the fastest step); give fewer epochs")
    need, have = memory_bytes(model, batch, min(train.eval_batch_size, n_windows)), machine_memory()
    if have is not None and need > MEMORY_SHARE * have:
        raise ConfigError(f"a model of vocab_size={model.vocab_size}, memory_size={model.memory_size}, "
                          f"embed_dim={model.embed_dim}, hops={model.hops} at batch {batch} needs about "
                          f"{_size(need)} for its tensors (estimated from its config), more than this machine's "
                          f"{_size(have)} can hold: give smaller sizes")


def capped_jobs(jobs: int | None, cores: int) -> tuple[int, str | None]:
    """Concurrent runs: ``jobs`` (None: one per core) capped at the cores, with a note saying so when capped.

    More runs than cores only share the cores, each one slower, with a copy of
    TensorFlow and its model in memory each (8 workers took 5.6 GB on 2 cores).
    """
    if jobs is None or jobs <= cores:
        return jobs or cores, None
    return cores, (f"note: --jobs {jobs} is more than the {cores} cores here; running at most {cores} at a time "
                   "(never more than there are runs)")


def _size(n: float) -> str:
    units = ["PB", "TB", "GB", "MB", "KB"]
    unit = units.pop()
    n /= 1000
    while n >= 1000 and units:
        unit = units.pop()
        n /= 1000
    return f"{n:.3g} {unit}"
