"""Keras habits of the Monitor: a run directory named when none is given, and one line at the end of fit."""

from __future__ import annotations

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError
from diagnose.instruments.rundir import new_run_dir

import_tensorflow_quietly()
import keras  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 6)).astype("float32")
Y = (X[:, 0] > 0).astype("int32")


def _model(name="mine"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")], name=name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_a_monitor_without_run_dir_names_a_new_one_for_each_fit_so_a_rerun_never_clashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mine-7").mkdir(parents=True)  # an earlier run's: the next is numbered after it
    wrapped = diagnose.instrument(_model())
    monitor = diagnose.Monitor(tensorboard=False)
    assert monitor.run_dir is None  # named when the fit begins, from the model's name
    wrapped.fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[monitor])
    first = monitor.run_dir
    # the same script again: a Monitor of its own, and the same Monitor for a second fit
    diagnose.instrument(_model()).fit(X, Y, epochs=1, batch_size=16, verbose=0,
                                      callbacks=[again := diagnose.Monitor(tensorboard=False)])
    wrapped.fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[monitor])
    assert [first, again.run_dir, monitor.run_dir] == [tmp_path.joinpath("runs", f"mine-{n}").relative_to(tmp_path)
                                                        for n in (8, 9, 10)]
    assert all(runrecord.is_run_dir(tmp_path / p) for p in (first, again.run_dir, monitor.run_dir))


def test_an_explicit_run_dir_holding_a_record_stays_refused_without_overwrite(tmp_path):
    diagnose.instrument(_model()).fit(X, Y, epochs=1, verbose=0, callbacks=[diagnose.Monitor(tmp_path / "r")])
    with pytest.raises(DiagnoseError, match="leave it out for a new one under runs/, or overwrite=True"):
        diagnose.Monitor(tmp_path / "r")
    diagnose.Monitor(tmp_path / "r", overwrite=True)  # explicit: accepted


def test_names_are_made_safe_and_a_file_in_the_way_is_refused_in_one_line(tmp_path):
    assert new_run_dir(tmp_path, "my model/v2").name == "my_model_v2-1"
    (tmp_path / "file").write_text("")
    with pytest.raises(DiagnoseError, match="is a file") as caught:
        new_run_dir(tmp_path / "file", "m")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("verbose", [0, 2, "auto"])
def test_the_end_of_fit_prints_one_line_with_the_check_command_unless_verbose_is_0(tmp_path, capsys, verbose):
    run = tmp_path / "my run"
    diagnose.instrument(_model()).fit(X, Y, epochs=1, batch_size=16, verbose=verbose,
                                      callbacks=[diagnose.Monitor(run, tensorboard=False)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("diagnose:")]
    if verbose == 0:
        assert lines == []
    else:
        steps = runrecord.read_summary(run)["steps"]
        assert lines == [f"diagnose: completed after {steps} steps; run record in {run}; "
                         f"findings: diagnose check '{run}'"]
