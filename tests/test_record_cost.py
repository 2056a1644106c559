"""What the Monitor's cheaper ways of doing things keep exactly as they were: the TensorBoard events, the contract
at the start, and the constant-prediction facts of the same targets computed once."""

from __future__ import annotations

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 6)).astype("float32")
Y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype("int32")


def _events(path):
    """The events of one event file, without their wall times."""
    from tensorboard.compat.proto import event_pb2

    events = []
    for record in tf.data.TFRecordDataset(str(path)):
        event = event_pb2.Event.FromString(record.numpy())
        event.ClearField("wall_time")
        events.append(event)
    return events


def test_tensorboard_events_are_what_tensorboards_own_writer_writes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from diagnose.instruments.rowlog import RowLog

    rows = [{"step": 10, "epoch": 0.5, "loss": 1.5, "grad_norm/dense": 0.25, "nan": float("nan"), "count": 3},
            {"step": 20, "epoch": 1.0, "loss": 1.25, "grad_norm/dense": 0.5}]
    log = RowLog(tmp_path / "ours")
    log.append(dict(rows[0]))
    log.flush()  # a flush on the way writes the rows so far; the rest at close
    log.append(dict(rows[1]))
    log.close()
    theirs = EventFileWriter(str(tmp_path / "theirs" / "tb"))
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="scalars"), data_class=summary_pb2.DATA_CLASS_SCALAR)
    for row in rows:
        theirs.add_event(event_pb2.Event(step=row["step"], summary=summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=k, metadata=metadata, tensor=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, float_val=[v]))
            for k, v in row.items() if k != "step" and isinstance(v, float) and np.isfinite(v)])))
    theirs.close()
    (ours,), (reference,) = (list((tmp_path / name / "tb").iterdir()) for name in ("ours", "theirs"))
    assert ours.name.startswith("events.out.tfevents.")
    assert _events(ours) == _events(reference)
    acc = EventAccumulator(str(tmp_path / "ours" / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors("loss")] == [(10, 1.5), (20, 1.25)]


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_the_contract_at_the_start_reads_the_probes_own_pass_as_it_would_its_own(tmp_path):
    probe = (X[:32], Y[:32])
    contracts = {}
    for name, probe_every in (("probed", None), ("unprobed", 0)):  # without probes the contract takes its own passes
        diagnose.instrument(_model()).fit(X, Y, epochs=1, verbose=0, callbacks=[
            diagnose.Monitor(tmp_path / name, probe=probe, probe_every=probe_every)])
        contracts[name] = runrecord.read_summary(tmp_path / name)["contract"]
    probed, unprobed = contracts["probed"], contracts["unprobed"]
    assert probed["output"]["at_start"] == pytest.approx(unprobed["output"]["at_start"], rel=1e-6)
    assert probed["affine"]["deviation"] == pytest.approx(unprobed["affine"]["deviation"], rel=1e-4)
    assert probed["affine"]["deviation"] > 1e-3  # tanh bends: measured, not missing
    assert probed["targets"] == unprobed["targets"] and probed["constant_loss"] == unprobed["constant_loss"]


def test_the_constant_of_the_same_targets_is_searched_once_and_handed_out_as_a_copy():
    from diagnose.instruments.constants import best_constant, loss_of_constant

    calls = []

    def loss(y_true, y_pred):
        calls.append(1)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    y = np.repeat(np.arange(3), [10, 20, 30]).astype("int32")
    settings = {"loss_name": "mine", "kind": "other", "from_logits": False, "activation": "softmax"}
    first = best_constant(loss, y, [3], **settings)
    searched = len(calls)
    again = best_constant(loss, y.copy(), [3], **settings)
    assert len(calls) == searched and again[0] == first[0] and np.array_equal(again[1], first[1])
    again[1][:] = 0  # the caller's copy
    assert np.array_equal(best_constant(loss, y, [3], **settings)[1], first[1])
    assert first[1] == pytest.approx([1 / 6, 1 / 3, 1 / 2], abs=1e-3)
    other = y.copy()
    other[0] = 2  # another target: searched again
    assert best_constant(loss, other, [3], **settings)[1][0] < first[1][0] and len(calls) > searched
    held_out = np.array([0, 1, 2, 2], "int32")
    assert loss_of_constant(loss, held_out, [3], first[1]) == loss_of_constant(loss, held_out, [3], first[1] + 0.0)
    assert loss_of_constant(loss, held_out, [3], first[1]) != loss_of_constant(loss, held_out, [3], first[1][::-1])


def test_a_record_started_beside_the_first_steps_is_checked_at_once_and_written_as_it_was_given(tmp_path):
    from diagnose.errors import DiagnoseError

    summary = {"contract": {"batch_size": 32}}
    pending = runrecord.start_record(tmp_path / "run", model={"kind": "keras"}, data={}, train={}, summary=summary)
    summary["contract"]["batch_size"] = 64  # changed after the call: the record keeps what it was given
    pending.wait()
    assert pending.done() and runrecord.read_summary(tmp_path / "run")["contract"] == {"batch_size": 32}
    assert runrecord.read_summary(tmp_path / "run")["status"] == "running"
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(DiagnoseError, match="notes.txt"):  # refused at the call, not on the thread
        runrecord.start_record(tmp_path / "run", model={}, data={}, train={})
    (tmp_path / "file").write_text("")
    pending = runrecord.start_record(tmp_path / "file" / "run", model={}, data={}, train={})
    with pytest.raises(OSError):  # what the writes raise, raised to whoever waits
        pending.wait()


def test_a_monitor_whose_record_cannot_be_written_stops_fit_with_the_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        diagnose.instrument(_model()).fit(X, Y, epochs=2, verbose=0,
                                          callbacks=[diagnose.Monitor(tmp_path / "file" / "run")])
    assert (tmp_path / "file").read_text() == ""


def test_files_written_together_are_synced_side_by_side_and_renamed_in_order(tmp_path, monkeypatch):
    import os

    from diagnose.files import atomic_write_all

    (tmp_path / "b.json").write_text("old b")
    renamed, synced, real_replace, real_fsync = [], [], os.replace, os.fsync

    def replace(src, dst):
        assert len(synced) == 2  # both on disk before either is renamed
        renamed.append(os.path.basename(dst))
        real_replace(src, dst)

    def fsync(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_all([(tmp_path / "a.csv", "new a"), (tmp_path / "b.json", "new b")])
    assert renamed == ["a.csv", "b.json"]
    assert (tmp_path / "a.csv").read_text() == "new a" and (tmp_path / "b.json").read_text() == "new b"

    def broken(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_all([(tmp_path / "a.csv", "newer a"), (tmp_path / "b.json", "newer b")])
    assert (tmp_path / "a.csv").read_text() == "new a" and (tmp_path / "b.json").read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]  # no temporary file left


def test_a_runs_last_rows_and_its_summary_are_written_together_summary_last(tmp_path, monkeypatch):
    import os

    renamed, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), real_replace(src, dst)))
    rows = [{"step": 5, "loss": 1.0}]
    runrecord.write_config(tmp_path, model={}, data={}, train={})
    renamed.clear()
    runrecord.write_end(tmp_path, rows, [{"step": 5, "hop": 1, "pos0": 3}], {"status": "completed", "steps": 5})
    assert renamed == ["metrics.csv", "attention.csv", "summary.json"]
    assert runrecord.read_summary(tmp_path)["status"] == "completed" and runrecord.record_problems(tmp_path) == []
    runrecord.write_metrics(tmp_path / "apart", rows)  # the same files as written one by one
    runrecord.write_attention(tmp_path / "apart", [{"step": 5, "hop": 1, "pos0": 3}])
    runrecord.write_summary(tmp_path / "apart", {"status": "completed", "steps": 5})
    for name in ("metrics.csv", "attention.csv", "summary.json"):
        assert (tmp_path / name).read_text() == (tmp_path / "apart" / name).read_text()
