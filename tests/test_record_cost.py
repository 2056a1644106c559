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
    from diagnose.instruments.contract import best_constant, loss_of_constant

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
