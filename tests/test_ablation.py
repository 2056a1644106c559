"""The ablation harness: spec validation, stable ids, resume after SIGKILL, failures, executors."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagnose import runrecord, studydir
from diagnose.memn2n.spec import build_spec, load_spec, run_id
from diagnose.errors import ConfigError

# A tiny study: 2 bases + 2 counterfactuals, tiny sizes, few steps, no XLA.
TINY_SPEC = """
[study]
name = "tiny"
seeds = 2

[budget]
steps = 30

[corpus]
synthetic = "topic-copy-small"

[sizes]
memory_size = 6
embed_dim = 8
hops = 2
batch_size = 16

[train]
log_every = 10
eval_every = 30
probe_every = 30
eval_max_windows = 512
eval_at_start = false
tensorboard = false
jit_compile = false

[factors]
output = []
"""


def _write(tmp_path, text=TINY_SPEC, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "diagnose.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("raw, needle", [
    ({"factors": {"outptu": []}}, "valid factors: output"),
    ({"factors": {"output": ["sigmoid"]}}, "valid levels: softmax, relu"),
    ({"factors": {"output": "relu"}}, "list of levels"),
    ({"sizes": {"hops": 0}}, "[sizes] hops must be a positive integer"),
    ({"sizes": {"embed_dim": "big"}}, "[sizes] embed_dim"),
    ({"sizes": {"depth": 3}}, "valid keys: batch_size, embed_dim, hops, memory_size"),
    ({"study": {"seeds": 0}}, "seeds"),
    ({"study": {"max_seeds": 0}}, "[study] max_seeds must be a count from 1"),
    ({"study": {"max_seeds": True}}, "[study] max_seeds"),
    ({"study": {"bases": ["paper", "nope"]}}, "paper, as-posted"),
    ({"budget": {"steps": -5}}, "steps"),
    ({"corpus": {"synthetic": "nope"}}, "topic-copy"),
    ({"corpus": {"context": "page"}}, "stream or line"),
    ({"train": {"speed": 1}}, "valid keys:"),
    ({"model": {"output": "sigmoid"}}, "softmax, relu"),
    ({"factors": {"lr": {"high": {"learning_rate": "fast"}}}}, "learning_rate"),
    ({"sectionx": {}}, "valid sections"),
])
def test_spec_validation_names_the_problem_and_the_choices(raw, needle):
    with pytest.raises(ConfigError) as err:
        build_spec(raw)
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_bad_spec_on_the_command_line_exits_2_with_one_line(tmp_path):
    spec = _write(tmp_path, TINY_SPEC.replace('output = []', 'output = ["sigmoid"]'))
    proc = _cli("run-ablation", str(spec), "--out", str(tmp_path / "abl"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "abl").exists()
    bad_toml = _write(tmp_path, "[study\nname=", "broken.toml")
    proc = _cli("run-ablation", str(bad_toml), "--out", str(tmp_path / "abl"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "broken.toml" in err and "TOML" in err


def test_default_study_contains_both_directions_for_every_factor():
    spec = build_spec({})
    names = [v.name for v, _ in spec.variants()]
    assert names[:2] == ["as-posted", "paper"]
    for factor in ("output", "h_wiring", "loss_reduction", "clip", "padding", "dropout", "hops"):
        assert any(n.startswith(f"as-posted | {factor}=") for n in names), factor
        assert any(n.startswith(f"paper | {factor}=") for n in names), factor
    # Temporal encoding at several init scales, on both sides.
    assert {"as-posted | temporal=none", "as-posted | temporal=ones", "paper | temporal=uniform"} <= set(names)
    assert len(names) == len(set(names))
    assert spec.seeds == (0, 1, 2)


def test_counterfactuals_change_exactly_one_factor():
    spec = build_spec({})
    configs = dict((v.name, c) for v, c in spec.variants())
    base = configs["as-posted"]
    switched = configs["as-posted | output=softmax"]
    diffs = {k for k in base.__dataclass_fields__ if getattr(base, k) != getattr(switched, k)}
    assert diffs == {"output"}
    assert configs["as-posted"].hops == configs["paper"].hops - 1  # one hop fewer, as posted


@pytest.mark.slow
def test_run_ids_are_stable_and_content_addressed(tmp_path):
    spec = load_spec(_write(tmp_path))
    tasks = spec.tasks(35)
    ids = [t.run_id for t in tasks]
    assert len(set(ids)) == len(ids)
    assert ids == [t.run_id for t in load_spec(_write(tmp_path)).tasks(35)]
    # The same id from a fresh interpreter (no per-process salt in the hash).
    code = ("from diagnose.memn2n.spec import load_spec; import sys; "
            "print(','.join(t.run_id for t in load_spec(sys.argv[1]).tasks(35)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "spec.toml")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.split(",") == ids
    # Any change to the resolved config or the seed changes the id.
    import dataclasses

    cfg = tasks[0].config
    assert run_id(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=99))) != ids[0]
    assert run_id(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, embed_dim=9))) != ids[0]


def _parent_is_init(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[3] == "1"
    except (FileNotFoundError, IndexError):
        return False


def _manifest(out):
    return studydir.read_manifest(out)


@pytest.mark.slow  # a sweep (or a run) trained twice, 11-17 s on two cores
def test_resume_after_sigkill_gives_exactly_the_runs_once(tmp_path):
    spec = _write(tmp_path)
    out = tmp_path / "abl"
    # --no-follow-up: the spec's runs only (added seeds and combinations are test_adaptive's).
    proc = _cli("run-ablation", str(spec), "--out", str(out), "--jobs", "1", "--quiet", "--no-follow-up")
    deadline = time.time() + 240
    first_done = None
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in (out / "runs").glob("*") if p.is_dir() and not p.name.endswith(".partial")
                and (p / "summary.json").is_file()] if (out / "runs").is_dir() else []
        if done:
            first_done = done[0]
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep finished before it could be killed; make it longer"
    assert first_done is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # Workers notice their driver is gone and exit within about a second.
    time.sleep(2.5)
    orphans = subprocess.run(["pgrep", "-f", "multiprocessing.spawn"], capture_output=True, text=True).stdout
    assert not [p for p in orphans.split() if _parent_is_init(p)], "a worker outlived its driver"
    kept = (first_done / "summary.json").read_bytes()
    before = _manifest(out)
    assert before["totals"]["pending"] > 0

    proc = _cli("run-ablation", str(spec), "--out", str(out), "--jobs", "1", "--quiet", "--no-follow-up")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    after = _manifest(out)
    expected = [t.run_id for t in load_spec(spec).tasks(35)]
    assert [r["id"] for r in after["runs"]] == expected  # every run, once, in order
    n = len(expected)
    assert n == 8  # 2 bases + 2 output switches, 2 seeds
    assert after["totals"] == {"runs": n, "completed": n, "diverged": 0, "failed": 0, "pending": 0}
    assert after["timings"]["resumed_runs"] >= 1
    assert (first_done / "summary.json").read_bytes() == kept  # the completed run was not redone
    on_disk = sorted(p.name for p in (out / "runs").iterdir())
    assert on_disk == sorted(expected)  # no duplicates, no .partial leftovers
    for rid in expected:
        summary = runrecord.read_summary(out / "runs" / rid)
        metrics = runrecord.read_metrics(out / "runs" / rid)
        config = runrecord.read_config(out / "runs" / rid)
        assert summary["status"] == "completed" and metrics["step"].iloc[-1] == 30
        assert config["train"]["steps"] == 30
    assert not (out / ".scratch").exists()
    assert f"{n} runs: {n} completed, 0 diverged, 0 failed" in stdout


@pytest.mark.slow  # a sweep of three runs, ~12 s under load
def test_a_diverging_counterfactual_does_not_stop_the_sweep(tmp_path):
    from diagnose.ablation.executors import LocalExecutor
    from diagnose.ablation.sweep import run_sweep, summarize

    spec = load_spec(_write(tmp_path), {"study": {"seeds": 1}, "factors": {
        "lr": {"huge": {"learning_rate": 1e12, "clip": "none", "loss_reduction": "sum"}}}})
    manifest = run_sweep(spec, tmp_path / "abl", LocalExecutor(jobs=1))
    by_variant = {r["variant"]: r for r in manifest["runs"]}
    assert by_variant["paper | lr=huge"]["status"] == "diverged"
    assert "step" in by_variant["paper | lr=huge"]["error"]
    assert by_variant["paper"]["status"] == "completed" and by_variant["as-posted"]["status"] == "completed"
    assert manifest["totals"]["diverged"] >= 1 and manifest["totals"]["pending"] == 0
    rows = {r["variant"]: r for r in summarize(tmp_path / "abl")}
    assert rows["paper | lr=huge"]["diverged"] == 1


@pytest.mark.slow  # a sweep (or a run) trained twice, 11-17 s on two cores
def test_ray_executor_gives_the_same_records_as_local(tmp_path):
    pytest.importorskip("ray")
    import ray

    from diagnose.ablation.executors import LocalExecutor, RayExecutor
    from diagnose.ablation.sweep import run_sweep

    spec = load_spec(_write(tmp_path), {"study": {"seeds": 1}})
    run_sweep(spec, tmp_path / "local", LocalExecutor(jobs=1))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(spec, tmp_path / "ray", RayExecutor(jobs=2))
    finally:
        ray.shutdown()
    local, remote = _manifest(tmp_path / "local"), _manifest(tmp_path / "ray")
    assert [r["id"] for r in local["runs"]] == [r["id"] for r in remote["runs"]]
    for r in local["runs"]:
        a = runrecord.read_metrics(tmp_path / "local" / "runs" / r["id"])
        b = runrecord.read_metrics(tmp_path / "ray" / "runs" / r["id"])
        assert a["loss"].tolist() == b["loss"].tolist()
        assert (tmp_path / "ray" / "runs" / r["id"] / "config.json").read_bytes() == \
            (tmp_path / "local" / "runs" / r["id"] / "config.json").read_bytes()


def test_combos_switch_several_factors_and_are_validated():
    spec = build_spec({"factors": {"output": []},
                       "combos": {"fix": {"base": "as-posted", "loss_reduction": "sum", "output": "softmax"}}})
    configs = {v.name: c for v, c in spec.variants()}
    combo = configs["as-posted | loss_reduction=sum + output=softmax"]
    base = configs["as-posted"]
    diffs = {k for k in base.__dataclass_fields__ if getattr(base, k) != getattr(combo, k)}
    assert diffs == {"loss_reduction", "output"}
    with pytest.raises(ConfigError, match="valid levels"):
        build_spec({"combos": {"x": {"base": "paper", "output": "tanh"}}})
    with pytest.raises(ConfigError, match="base"):
        build_spec({"combos": {"x": {"output": "relu"}}})
    # The default study carries the question's contrast.
    names = [v.name for v, _ in build_spec({}).variants()]
    assert "as-posted | loss_reduction=sum + temporal=ones" in names
    assert "as-posted | loss_reduction=sum + temporal=none" in names
