"""The `diagnose` command line. Each command parses options, builds a config and calls the library.

Errors the user can fix print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from diagnose.errors import DiagnoseError
from diagnose.progress import StepsBar, SweepProgress

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's start-up chatter is not for the user


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DiagnoseError(f"--set expects KEY=VALUE, got {pair!r} (for example --set hops=3)")
        out[key.strip()] = value.strip()
    return out


def _given(ctx, param, value):
    """Refuses an option given as '' (an unset shell variable, say): an empty --out would mean the current
    directory, an empty --synthetic the default corpus."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter("is empty; give a value, or leave the option out")
    return value


def _jobs(jobs: int | None) -> int:
    """--jobs capped at the cores, saying so on stderr when it was more."""
    from diagnose.limits import capped_jobs
    from diagnose.parallel import cores

    jobs, note = capped_jobs(jobs, cores())
    if note:
        click.echo(note, err=True)
    return jobs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diagnose")
def cli():
    """Why does my Keras model not converge? Train, measure and diagnose."""


@cli.command()
@click.option("--preset", default="paper", show_default=True,
              help="Model preset: 'paper' (Sukhbaatar et al. 2015) or 'as-posted' (the question's model).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config field, e.g. --set output=softmax --set hops=3. Repeatable.")
@click.option("--corpus", type=str, default=None, callback=_given,
              help="PTB-format text file or directory (*train*.txt, *valid*.txt[, *test*.txt]).")
@click.option("--synthetic", type=str, default=None, callback=_given,
              help="Synthetic corpus preset (default when no --corpus: topic-copy).")
@click.option("--context", type=click.Choice(["stream", "line"]), default="stream", show_default=True,
              help="Memory spans line breaks (stream, the paper) or restarts at each line.")
@click.option("--max-vocab", type=click.IntRange(min=3), default=None,
              help="Keep at most N word types of a --corpus; the rest map to <unk>.")
@click.option("--epochs", type=float, default=None, help="Training budget in epochs (default 1).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training budget in optimizer steps (overrides --epochs).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for weights, dropout and batch order.")
@click.option("--log-every", type=click.IntRange(min=1), default=20, show_default=True,
              help="Steps per metrics.csv row.")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="Steps between validation passes (default: each epoch).")
@click.option("--no-jit", is_flag=True, help="Do not XLA-compile the train step.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), callback=_given,
              help="Run directory to write (config.json, metrics.csv, summary.json).")
@click.option("--force", is_flag=True, help="Replace a run record already in --out.")
@click.option("--eval-test", is_flag=True, help="Also evaluate the test split at each validation.")
@click.option("--checkpoint", is_flag=True, help="Save a checkpoint in --out after each validation.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint, up to this budget (same settings otherwise).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(preset, sets, corpus, synthetic, context, max_vocab, epochs, steps, seed, log_every, eval_every,
          no_jit, out, force, eval_test, checkpoint, resume, quiet):
    """Train one model and write its run record to --out.

    With --force, the new record is built beside the old one and replaces it by a
    rename when training starts: an interrupted run leaves the old record whole, or
    the new one saying it never finished.
    """
    from diagnose import runrecord, studydir
    from diagnose.memn2n.checkpoint import read_checkpoint
    from diagnose.memn2n import require_tensorflow
    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
    from diagnose.files import check_writable

    if corpus and synthetic:
        raise DiagnoseError("give either --corpus or --synthetic, not both")
    if resume and force:
        raise DiagnoseError("give either --resume (continue the run in --out) or --force (replace it), not both")
    if studydir.is_study_dir(out):
        raise DiagnoseError(f"--out {out} is an ablation directory; give 'diagnose train' a run directory of its own")
    if resume and read_checkpoint(out) is None:
        raise DiagnoseError(f"{out} has no checkpoint to resume from; train with --checkpoint first, "
                            "or drop --resume")
    if runrecord.is_run_dir(out) and not (force or resume):
        raise DiagnoseError(f"{out} already holds a run record; pass --force to replace it or choose another --out")
    data = DataConfig(corpus=corpus, synthetic=synthetic if synthetic is not None else "topic-copy", context=context,
                      max_vocab=max_vocab)
    tcfg = TrainConfig(seed=seed, epochs=epochs if epochs is not None else 1.0, steps=steps, log_every=log_every,
                       eval_every=eval_every, jit_compile=not no_jit, eval_test=eval_test,
                       checkpoint=checkpoint or resume)
    config = make_run_config(preset, _parse_sets(sets), data=data, train=tcfg)
    check_writable(out)  # before the corpus and TensorFlow: minutes sooner than the first write
    from diagnose.memn2n.data.load import load_corpus

    corpus = load_corpus(config.data, memory_size=config.model.memory_size)  # bad input fails before TF loads
    require_tensorflow()
    from diagnose.memn2n.config import resolve
    from diagnose.limits import check_run

    resolved, notes = resolve(config, corpus.vocab_size, corpus.num_windows("train"))
    check_run(resolved, corpus.num_windows("train"))  # sizes the machine cannot take: before TensorFlow loads
    for note in notes:
        click.echo(f"note: {note}", err=True)
    from diagnose.memn2n.train import train as run_training

    with StepsBar(quiet) as progress:
        result = run_training(config, out, corpus=corpus, progress=progress, resume=resume)
    s = result.summary
    final = s["final"]
    click.echo(f"{s['status']}: {s['steps']} steps, train loss {_fmt(final['train_loss'])}, "
               f"valid loss {_fmt(final['val_loss'])} (perplexity {_fmt(final['val_perplexity'], 1)}), "
               f"{_fmt(s['samples_per_s'], 0)} samples/s -> {result.run_dir}")
    if s.get("error"):
        click.echo(f"  {s['error']}")


@cli.command("run-ablation")
@click.argument("spec", required=False, type=str)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), callback=_given,
              help="ABLATION_DIR (default: ablations/<study name>). An existing one is resumed; without SPEC, "
                   "with the spec it was run with.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds every variant starts with (overrides the spec).")
@click.option("--max-seeds", type=click.IntRange(min=1), default=None,
              help="Seeds a variant may get where its interval stays inconclusive (overrides the spec; default 12).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps per run (overrides the spec).")
@click.option("--corpus", type=str, default=None, callback=_given, help="PTB-format corpus instead of the spec's.")
@click.option("--synthetic", type=str, default=None, callback=_given,
              help="Synthetic corpus preset instead of the spec's.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Concurrent runs (default: one per core).")
@click.option("--executor", type=click.Choice(["local", "inline", "ray"]), default="local", show_default=True,
              help="Where runs train: local processes, this process (inline), or Ray tasks.")
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--no-follow-up", is_flag=True,
              help="Do not run the combinations and added seeds the verdict asks for.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option("--force", is_flag=True,
              help="Replace a study of another spec in --out (the runs both specs share are kept).")
@click.option("--quiet", is_flag=True,
              help="No progress (a bar on a terminal, else a line per finished run).")
def run_ablation(spec, out, seeds, max_seeds, steps, corpus, synthetic, jobs, executor, ray_address, no_follow_up,
                 no_report, force, quiet):
    """Run a counterfactual ablation study (default: the built-in study on the synthetic corpus).

    Trains the as-posted and paper models and every single-factor switch between
    them over several seeds, resumably; then, while the verdict asks for them, more
    seeds where an interval is inconclusive and the combinations of switches that
    could close the gap. Prints a table of the results and the verdict. A SPEC whose
    [study] names a builder studies your own Keras model (see
    diagnose/userstudy/spec.py). Exits 1 when runs failed.
    """
    from diagnose import studydir
    from diagnose.ablation.executors import make_executor
    from diagnose.ablation.study import run_study
    from diagnose.ablation.sweep import check_study_target, summarize
    from diagnose.findings.verdict import format_verdict
    from diagnose.studies import load_study_spec

    overrides: dict = {}
    if seeds is not None:
        overrides.setdefault("study", {})["seeds"] = seeds
    if max_seeds is not None:
        overrides.setdefault("study", {})["max_seeds"] = max_seeds
    if steps is not None:
        overrides.setdefault("budget", {})["steps"] = steps
    if corpus and synthetic:
        raise DiagnoseError("give either --corpus or --synthetic, not both")
    if corpus is not None:
        overrides.setdefault("corpus", {})["path"] = corpus
    if synthetic is not None:
        overrides.setdefault("corpus", {})["synthetic"] = synthetic
    resumed = None
    if spec is None and out is not None and studydir.is_study_dir(out):
        try:  # no SPEC: the study in --out goes on, with the spec it was run with
            resumed = studydir.read_manifest(out).get("spec")
        except DiagnoseError as exc:
            raise DiagnoseError(f"{exc}; give its spec (diagnose run-ablation SPEC --out {out} --force) to rebuild "
                                "the study from its runs") from None
    study = load_study_spec(spec, overrides, raw=resumed)  # the built-in model's, or a builder of the user's
    out = Path(out or Path("ablations") / study.name)
    check_study_target(out)
    jobs = _jobs(jobs) if executor == "local" else jobs or os.cpu_count() or 1  # Ray's cores are the cluster's
    runner = make_executor(executor, jobs=jobs, ray_address=ray_address)
    with studydir.StudyLock(out):  # held through the follow-ups and the report
        with SweepProgress(quiet) as progress:
            with runner if hasattr(runner, "__enter__") else contextlib.nullcontext():  # workers kept across rounds
                manifest, verdict = run_study(study, out, runner, follow_up=not no_follow_up, progress=progress,
                                              force=force)
        t = manifest["totals"]
        rows = summarize(out)
        width = max(len(r["variant"]) for r in rows)
        click.echo(f"{'variant':<{width}}  runs  valid loss over the last quarter (mean ± sd over seeds)")
        for r in rows:
            n = r["completed"] + r["diverged"] + r["failed"]
            tag = "" if not (r["diverged"] or r["failed"]) else f"  [{r['diverged']} diverged, {r['failed']} failed]"
            click.echo(f"{r['variant']:<{width}}  {n:>4}  {_fmt(r['val_loss_mean'])} ± "
                       f"{_fmt(r['val_loss_sd'])}{tag}")
        click.echo(f"{t['runs']} runs: {t['completed']} completed, {t['diverged']} diverged, {t['failed']} failed "
                   f"-> {out}")
        click.echo(format_verdict(verdict))
        if not no_report:
            from diagnose.reports.html import build_report

            click.echo(f"report: {build_report([out], out / studydir.REPORT)}")
        elif (out / studydir.REPORT).is_dir():
            click.echo(f"note: {out / studydir.REPORT} is left as it was (--no-report), from before this run; "
                       f"diagnose report {out} brings it up to date", err=True)
    failed = [e for e in manifest["runs"] if e["status"] not in ("completed", "diverged")]
    if failed:
        click.echo(f"error: {len(failed)} of {len(manifest['runs'])} runs failed (first: {failed[0]['error']}); "
                   f"each error is in {out / studydir.MANIFEST} and the run's summary.json under "
                   f"{out / studydir.RUNS}", err=True)
        return 1
    return 0


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the findings (or verdict) as JSON.")
@click.option("--prove", is_flag=True, help="Train each finding's mechanical fix over seeds (into RUN/proof) and "
                                            "mark it proven, refuted or inconclusive.")
@click.option("--seeds", type=click.IntRange(min=2), default=3, show_default=True, help="Seeds of a proof to start.")
@click.option("--max-seeds", type=click.IntRange(min=2), default=None,
              help="Most seeds a finding still inconclusive gets, added in rounds [default: 8].")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Concurrent runs of a proof (default: one "
                                                                       "per core).")
@click.option("--also", multiple=True, metavar="ID", help="Also prove this finding's fix, found or not. Repeatable.")
@click.option("--fail-on", type=click.Choice(["root-cause", "symptom"]), default=None,
              help="Exit 1 when a run has a finding of this kind or worse (unexplained > root-cause > symptom), "
                   "to fail a CI job on it.")
def check(path, as_json, prove, seeds, max_seeds, jobs, also, fail_on):
    """Diagnose a run (RUN_DIR: findings) or a study (ABLATION_DIR: its verdict). Writes nothing but a proof.

    For a run: each finding with its id, kind, severity, evidence and fix, and what
    its proof found where there is one (RUN/proof). For an ablation: effects with
    confidence intervals, root causes in order, and the smallest set of switches that
    recovers the reference, computed from the records on disk; when the verdict wants
    follow-up combinations not yet run, it names the command that runs them.

    Exits 0 whatever it finds, unless --fail-on KIND is given: then 1 when a finding
    of that kind or worse is found (an unexplained failure is worse than a root
    cause, a root cause worse than a symptom). 2 is bad input, as everywhere.
    """
    import json as json_lib

    from diagnose import runrecord, studydir

    target = Path(path)
    if studydir.is_study_dir(target):
        from diagnose.files import clean_json
        from diagnose.findings.proof import format_proof
        from diagnose.findings.verdict import format_verdict
        from diagnose.userstudy.prove import study_verdict

        if prove or fail_on:
            option = "--prove" if prove else "--fail-on"
            raise DiagnoseError(f"{option} takes a run directory; {target} is a study (check one of its runs, "
                                f"{target}/{studydir.RUNS}/<id>, with {option})")
        verdict = study_verdict(target)
        text = format_verdict(verdict) + (f"\n{format_proof(verdict.proof)}" if verdict.proof else "")
        click.echo(json_lib.dumps(clean_json(verdict.to_json()), indent=2) if as_json else text)  # numpy scalars
        from diagnose.ablation.study import study_notes

        for line in study_notes(target, verdict):
            click.echo(line, err=as_json)
        return
    if not runrecord.is_run_dir(target):
        raise DiagnoseError(runrecord.not_a_record(path))
    problems = runrecord.readable_problems(target, "train it again (diagnose train --force), or rerun the "
                                                   "study it belongs to (run-ablation redoes it)")
    from diagnose.files import clean_json
    from diagnose.findings import check_run
    from diagnose.findings.proof import findings_with_proof
    from diagnose.userstudy.prove import prove_run, read_proof

    if prove:
        with SweepProgress(as_json) as bar:
            prove_run(target, seeds=seeds, jobs=None if jobs is None else _jobs(jobs), also=also, progress=bar,
                      **({} if max_seeds is None else {"max_seeds": max_seeds}))
    findings = check_run(target)
    crashed = runrecord.crash_note(target)
    for note in ([runrecord.NEVER_FINISHED] if problems else []) + ([crashed] if crashed else []):
        click.echo(f"note: {note}; what follows reads it as far as it got", err=as_json)
    text, entries = findings_with_proof(findings, read_proof(target))
    if not entries and (crashed or problems):
        text = "no findings in what it recorded"
    click.echo(json_lib.dumps(clean_json(entries), indent=2) if as_json else text)
    return 1 if fail_on and fails_on(findings, fail_on) else 0


def fails_on(findings: list, kind: str) -> bool:
    """Whether a finding of ``kind`` or a worse one is among ``findings`` (KINDS goes worst first)."""
    from diagnose.findings.base import KINDS

    return any(f.kind in KINDS[:KINDS.index(kind) + 1] for f in findings)



@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), callback=_given,
              help="Report directory (default: PATH/report for one path).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out that no report wrote (never a run or study).")
def report(paths, out, force):
    """Write an HTML/PNG report (index.html, a page per run, figures) for an ABLATION_DIR or RUN_DIRs.

    A study's first screen shows the verdict as text and as a figure beside the loss
    curves of the faulty base, the fix and the reference; then the findings, the
    interactions, one section per factor the study varies, diagnostics and a table of
    every run linking to its own page. It works offline. A second report replaces
    the first; a run, a study or a directory no report wrote is never replaced
    (--force replaces the last).
    """
    from diagnose.reports.html import build_report

    what = "--out" if out is not None else "the report directory"
    if out is None:
        if len(paths) > 1:
            raise DiagnoseError("give --out DIR when reporting on several runs")
        out = Path(paths[0]) / "report"
    try:
        index = build_report(list(paths), out, force=force, what=what)
    except ValueError as exc:
        raise DiagnoseError(str(exc)) from None
    except OSError as exc:  # the place failed while writing (full, or made read-only): the old report stays
        raise DiagnoseError(f"cannot write the report to {out} ({exc.strerror or exc}); "
                            f"{'choose' if what == '--out' else 'give --out'} a directory you can write") from None
    click.echo(str(index))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", default="loss", show_default=True, help="A metrics.csv column, e.g. val_loss.")
@click.option("--out", "out", default="compare.png", show_default=True, type=click.Path(dir_okay=False),
              callback=_given, help="PNG file to write.")
@click.option("--force", is_flag=True, help="Replace a file --out names that compare did not write.")
def compare(run_dirs, metric, out, force):
    """Plot one metric for any runs, overlaid; runs differing only by seed form a band.

    Runs of a study are labelled by variant and seed, as the report names them.
    """
    from diagnose import runrecord
    from diagnose.outputs import check_compare_png
    from diagnose.reports.plots import compare as draw

    for path in run_dirs:
        if not runrecord.is_run_dir(path):
            raise DiagnoseError(f"{path} is not a run directory (no config.json); pass RUN_DIRs")
        runrecord.readable_problems(path, "leave it out, or train it again (diagnose train --force)")
    check_compare_png(out, force)  # a file compare did not write, or one inside a record: refused
    try:
        click.echo(str(draw(list(run_dirs), out, metric=metric)))
    except ValueError as exc:
        raise DiagnoseError(str(exc)) from None


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit status 2 for bad input."""
    try:
        code = cli.main(args=argv, prog_name="diagnose", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # bad usage: unknown option, bad value...
        ctx_cmd = f" (see: diagnose {exc.ctx.info_name} --help)" if getattr(exc, "ctx", None) and exc.ctx.parent else ""
        click.echo(f"error: {exc.format_message()}{ctx_cmd}", err=True)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except DiagnoseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug or a crash in training: say so in one line, traceback on request
        if os.environ.get("DIAGNOSE_DEBUG"):
            raise
        click.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(set DIAGNOSE_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
