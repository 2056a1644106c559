"""What the Monitor's cheaper ways of doing things keep exactly as they were: the TensorBoard events."""

from __future__ import annotations

import numpy as np

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()


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
