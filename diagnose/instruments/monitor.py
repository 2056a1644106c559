"""``Monitor``: the callback that writes an instrumented model's run record while ``fit`` trains it.

It reads the wrapper's accumulators once per logged row (see
:mod:`diagnose.runrecord` for the record). Without being asked it derives the
baselines the findings compare against from the targets the model trains on (the
labels' entropy and ln of the number of classes; a regression's target variance),
takes the ignores-input probe on a fixed batch it picks from the data ``fit`` is
given (held-out data when there is any), and probes before the first step, at rows 1, 2, 4,
8, ... that the training since the last probe pays for, and at the last row.
"""

from __future__ import annotations

import collections
import math
import os
import time
from pathlib import Path


from diagnose import runrecord, studydir
from diagnose._tf import import_tensorflow_quietly
from diagnose.divergence import divergence
from diagnose.errors import DiagnoseError
from diagnose.instruments.contract import target_of, task_contract
from diagnose.instruments.task_error import constant_task_error
from diagnose.instruments.describe import describe, initial_weights, variable_layers, variables
from diagnose.instruments.epoch_logs import epoch_columns
from diagnose.instruments.preparation import as_arrays
from diagnose.instruments.probe_data import check_probe, examples, first_batch
from diagnose.instruments.probe_row import ProbeRow
from diagnose.instruments.probes import auto_due, next_probe, spaced
from diagnose.instruments.rng import random_state_kept, seed_states
from diagnose.instruments.rowlog import RowLog
from diagnose.instruments.rundir import RUNS_ROOT, end_line, new_run_dir
from diagnose.rebuild import rebuild_entry

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["Monitor"]

# Steps per metrics.csv row by default: 20 keeps the host reads far under 1% of a step's time
# on small models, and gives a few hundred-step fit some twenty rows ...
DEFAULT_LOG_EVERY = 20
# ... and a shorter fit at least 16 rows: the curve rules need four rows in their windows (the
# last fifth to third of the run) to see a trend or a flip.
MIN_AUTO_ROWS = 16


class Monitor(keras.callbacks.Callback):
    """Writes an instrumented model's run record while ``fit`` trains it.

    Args:
        run_dir: where config.json, metrics.csv, attention.csv, summary.json and tb/ go. Left out,
            each fit gets a new one, ``runs/<model name>-<n>`` under the working directory (n one
            past the highest there), so a script run again never meets its earlier record; read
            it from ``monitor.run_dir`` after the fit.
        log_every: training steps per metrics.csv row; by default 20, or fewer for a short
            run so that it logs at least 16 rows (a 35-step fit logs every 2 steps).
        probe: optional fixed ``(x, y)`` batch for the ignores-input probe; by default
            one is taken from the validation data given to ``fit`` (else the
            training data), up to 256 examples spread over it.
        probe_every: steps between probes; by default logged rows 1, 2, 4, 8, ... and the
            last take one (:func:`~diagnose.instruments.probes.auto_due`), those of them the
            training since the last probe pays for skipped (a probe then costs at most 5% of
            it: :func:`~diagnose.instruments.probes.spaced`); 0 disables.
        baselines: optional dict merged over the derived baselines in summary.json.
        tensorboard: also write TensorBoard scalars.
        overwrite: replace a run record already in ``run_dir`` (by default refused,
            as ``diagnose train`` refuses without ``--force``). A Monitor records one fit:
            a second fit with it finds its own record there and is refused the same way.
        rebuild: optional, how to build and train this run again, so that ``diagnose
            check RUN --prove`` can test its findings' fixes: ``{"builder": build,
            "data": data, "settings": {...}, "fit": {...}}`` with functions or
            ``"module:function"`` references (see :func:`diagnose.rebuild.rebuild_entry`).
        stop_on_divergence: end ``fit`` at the row where the run is found diverged (on JAX, where a
            row is read while the next row's steps run, at the end of that next row). Off by
            default: the Monitor only observes, so training goes on exactly as ``fit`` would
            (add ``keras.callbacks.TerminateOnNaN()`` to stop on a NaN); the record says
            where it diverged either way.

    At the end of a fit it prints one line (status, steps, the record's place and the
    ``diagnose check`` command to run), unless the fit was given ``verbose=0``, as Keras'
    own progress bar.

    Raises:
        DiagnoseError: ``run_dir`` is a file, an ablation directory, or holds a run
            record and ``overwrite`` is False (when made, and again when a fit begins).
    """

    # On JAX and PyTorch, Keras runs the batch hooks of callbacks that declare this on a thread of its own,
    # and fit goes on to the next step without waiting for the last one's logs; the Monitor's work after each
    # step is then called on fit's own thread by the instrumented model's train function (step_hooks) and its
    # batch hook does nothing. (A batch hook fit waits on costs JAX its overlap of steps: ~20% on small
    # models.) TensorFlow's fit calls every hook in turn whatever this says.
    async_safe = True

    def __init__(self, run_dir: str | os.PathLike | None = None, log_every: int | None = None,
                 probe: tuple | None = None, probe_every: int | None = None, baselines: dict | None = None,
                 tensorboard: bool = True, overwrite: bool = False, rebuild: dict | None = None,
                 stop_on_divergence: bool = False):

        super().__init__()
        self.auto_named = run_dir is None  # a new runs/<model>-<n> for each fit (on_train_begin)
        self.run_dir = None if run_dir is None else Path(run_dir)
        if self.run_dir is not None:
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} is a file; give a directory for the run "
                                    "record")
            if studydir.is_study_dir(self.run_dir):
                raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} is an ablation directory; give a run "
                                    "directory of its own")
            if runrecord.is_run_dir(self.run_dir) and not overwrite:
                raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} already holds a run record; pass another "
                                    "run_dir, leave it out for a new one under runs/, or overwrite=True to replace "
                                    "it")
        self.overwrite = overwrite
        for name, value in (("log_every", log_every), ("probe_every", probe_every)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                      or (value == 0 and name == "log_every")):
                allowed = "a positive integer" if name == "log_every" else "a positive integer, or 0 for no probe"
                raise DiagnoseError(f"diagnose.Monitor: {name}={value!r} is not {allowed}; pass e.g. {name}=20 "
                                    "(or leave it out)")
        if probe is not None and not (isinstance(probe, (tuple, list)) and len(probe) == 2):
            raise DiagnoseError("diagnose.Monitor: probe must be an (x, y) pair of a batch the model takes, e.g. "
                                "probe=(x_val[:256], y_val[:256])")
        self.requested_log_every, self.log_every, self.probe = log_every, log_every or DEFAULT_LOG_EVERY, probe
        self.probe_every = probe_every  # None: rows 1, 2, 4, 8, ...
        self.baselines = dict(baselines or {})
        self.tensorboard = tensorboard
        self.auto_probe = None
        self.probe_after = None  # a training dataset to take the probe batch from once training is over
        self.rebuild = None if rebuild is None else rebuild_entry(rebuild)
        self.stop_on_divergence = stop_on_divergence
        self.contract_inputs: dict = {}  # what fit was given that the contract reads (set by Instrumented.fit)
        self._begun = None  # the record's start, written beside the first steps (runrecord.start_record)
        self._after_steps = False  # the model's train function calls _after_step (JAX, PyTorch)

    @property
    def model(self):
        """The instrumented model fit trains. Keras' own property first writes JAX's training state into the
        model's variables at every read (a copy of every weight, and fit's next step takes them back out): at
        each row that was a tenth of a small model's step time. The Monitor reads no weight; its probes run on
        the state fit holds (``Instrumented.probe_losses``)."""
        return self._model

    def on_train_begin(self, logs=None):
        if not getattr(self.model, "instrumented", False):  # diagnose.instrument's model (instruments.wrapper)
            raise DiagnoseError("diagnose.Monitor needs the model returned by diagnose.instrument(model)")
        if self.auto_named:
            self.run_dir = new_run_dir(Path(RUNS_ROOT), self.model.user_model.name)
        if runrecord.is_run_dir(self.run_dir) and not self.overwrite:
            # A record made since the Monitor was made: this Monitor's earlier fit, or another writer's.
            raise DiagnoseError(f"diagnose.Monitor: {self.run_dir} already holds a run record (a Monitor records one "
                                "fit); give this fit a Monitor of its own, diagnose.Monitor(another_run_dir), or "
                                "overwrite=True to replace the record")
        self.model.setup()  # fit has built the user's model by now
        self.step, self.epoch, self.epoch_start, self.logged, self.rows = 0, 0, 0, 0, 0
        self.t0 = time.perf_counter()
        self.status, self.error, self.diverged, self.finished = "running", None, None, False
        self._unread = collections.deque()  # rows closed, not yet read: (step and rate, probe, read)
        self.next_probe = self.probe_every or 0
        self.probed_at = 0  # the step of the last probe (the first is taken before the first step)
        if self.probe is not None:
            check_probe(self.model.user_model, self.probe)
        self.probe_data = self.probe if self.probe is not None else self.auto_probe
        self.log_every = self.requested_log_every or _auto_log_every(self.params)
        user = self.model.user_model
        self._seed_states = seed_states(user)  # the model is built: its variables stay as they are through fit
        self.probes = ProbeRow(self.model, self._seed_states)
        self.loss_at_step0, self.at_start, kept = None, None, None
        if self.probe_data is not None and self.probe_every != 0:
            with random_state_kept(user, self._seed_states):
                self.loss_at_step0 = self.model.probe_losses(*self.probe_data)[0]
            # the outputs that pass took on the probe batch, real and shuffled: the contract's at the start
            if self.model.probe_outputs is not None and self.model.probe_shuffled_outputs is not None:
                kept = (self.model.probe_outputs, self.model.probe_shuffled_outputs)
        self.contract = self._contract(user, kept)
        # A record already there (overwrite=True) stays whole until this one replaces it by rename. Its files are
        # written on a thread beside the first steps (syncing them to disk waits on every other writer's data).
        self.variables = {"variables": variables(user), "variable_layers": variable_layers(user),
                          **initial_weights(user)}
        self._begun = runrecord.start_record(
            self.run_dir, model=describe(user) | {"instrumented": self.model.taps.found}, data={},
            train={"log_every": self.log_every, "probe_every": self.probe_every or "auto",
                   "sample_every": self.model.schedule.every,
                   "optimizer": keras.optimizers.serialize(user.optimizer)["config"]},
            rebuild=self.rebuild, summary=self.variables | {"contract": self.contract})
        self.log = RowLog(self.run_dir, tensorboard=self.tensorboard)
        self.versions = runrecord.versions()
        self._after_steps = keras.backend.backend() != "tensorflow"
        if self._after_steps:
            self.model.step_hooks.append(self._after_step)

    def _contract(self, user, probe_outputs=None) -> dict:
        """The model-task contract's facts (:mod:`~diagnose.instruments.contract`), read before the first step;
        ``probe_outputs``: the model's outputs on the probe batch, real and shuffled, where a probe took them."""
        inputs = self.contract_inputs
        y, y_valid = inputs.get("y"), inputs.get("y_valid")
        probe_y = None
        if self.probe_data is not None:
            probe_y = as_arrays(self.probe_data[1])  # held out, where the run holds anything out
        y = probe_y if y is None else y
        y_valid = probe_y if y_valid is None else y_valid
        steps = self.params.get("steps") if isinstance(self.params, dict) else None
        try:
            with random_state_kept(user, self._seed_states):
                facts = task_contract(user, self.model.loss_info, y=y,
                                      probe_x=self.probe_data[0] if self.probe_data is not None else None,
                                      batch_size=inputs.get("batch_size"), epochs=inputs.get("epochs"),
                                      steps_per_epoch=steps, y_valid=y_valid, x_train=inputs.get("x_sample"),
                                      probe_outputs=probe_outputs)
            if probe_y is not None:  # what a model that learned nothing scores on the probe batch
                names = [name for name, _, _ in self.model.outputs]
                for index, each in ([(0, facts)] if "targets" in facts else
                                    [(names.index(o["name"]), o) for o in facts.get("outputs") or []
                                     if o.get("name") in names]):
                    target = probe_y if each is facts else target_of(probe_y, each["name"], index)
                    error = constant_task_error(target, each)
                    if error is not None:
                        each["probe_constant_task_error"] = error
            return facts | {"weighted": bool(inputs.get("weighted"))}
        except Exception as error:  # noqa: BLE001 - the contract is evidence, never a reason for fit to fail
            return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.step

    def on_train_batch_end(self, batch, logs=None):
        if self._after_steps:  # counted by the model's train function instead (async_safe)
            return
        # ``batch`` is the last batch of this call (several with steps_per_execution), as Keras numbers it: past
        # the epoch's end where its last call ran short of data
        steps = (self.params or {}).get("steps")
        self._stepped(self.epoch_start + (batch + 1 if not isinstance(steps, int) else min(batch + 1, steps)))

    def _after_step(self) -> None:
        """JAX, PyTorch: the model's train function calls this after each step (several a call on JAX with
        steps_per_execution above 1), on fit's thread."""
        self._stepped(self.step + 1)

    def _stepped(self, step: int) -> None:
        self.step = step
        if self.at_start is None:  # the model as built, before a run that blows up at once hides it
            self.at_start = {k: v for k, v in self.model.peek_row().items() if math.isfinite(v)}
        if self.step // self.log_every > self.logged // self.log_every:
            self._log()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.step != self.logged:
            self._log()
        self._read_rows()  # fit has waited for the epoch's steps already
        row = self.log.rows[-1] if self.log.rows else None
        if row is not None and logs:
            row.update(epoch_columns(logs, row, self.model.loss_info, self.model.outputs,
                                     self.contract_inputs.get("validation_batch_size")))
        if self.log.flush_due(boundary=True):  # spaced so that rewrites stay ~1% of a short fit's time
            self._record_started()
            self.log.flush()

    def _record_started(self) -> None:
        """Waits for the record's start (config.json, the running summary), raising what its writes raised:
        nothing else is written into run_dir before it."""
        begun, self._begun = self._begun, None
        if begun is not None:
            try:
                begun.wait()
            except BaseException:
                self.log = None  # no record: nothing to write rows or a failure into
                raise

    def _log(self) -> None:
        """Closes a row at this step: its step, learning rate and probe taken now, its means read by
        :meth:`_read_rows` (on JAX a row later, while the next row's steps run: see ``Instrumented.close_row``)."""
        if self._begun is not None and self._begun.done():  # a record that could not be written stops fit here
            self._record_started()
        read = self.model.close_row()
        self.logged = self.step
        self.rows += 1
        per_epoch = (self.params or {}).get("steps")  # epochs done, fractional, as the record says (runrecord)
        epoch = self.step / per_epoch if isinstance(per_epoch, int) and per_epoch > 0 else self.epoch
        head = {"step": self.step, "epoch": epoch,
                "learning_rate": self.model.learning_rate(unread=self.model.reads_behind)}
        self._unread.append((head, self._probe() if self._probe_due() else dict, read))
        self._read_rows(behind=1 if self.model.reads_behind else 0)

    def _read_rows(self, behind: int = 0) -> None:
        """Reads the closed rows, in order, all but the last ``behind``, into the record."""
        while len(self._unread) > behind:
            head, probe, read = self._unread.popleft()
            acc = read()
            row = {**head, "learning_rate": float(head["learning_rate"]), **acc["row"], **probe()}
            self.log.append(row, acc["histogram"])
            if acc["diverged"] and self.status == "running":
                self.status, self.diverged = "diverged", acc["diverged"]
                self.error = (f"non-finite value at step {acc['diverged']['step']} "
                              f"(variable {acc['diverged']['variable']})")
                self.model.stop_training = self.stop_on_divergence
            elif self.status == "running" and (blown := divergence(row, self.model.targets.baselines().get("classes"))):
                # A classifier's loss far beyond ln(classes), or an infinite gradient norm: no NaN needed.
                self.status, self.diverged = "diverged", {"step": row["step"], "variable": blown["variable"]}
                self.error = blown["error"]
                self.model.stop_training = self.stop_on_divergence

    def _probe(self):
        """A call giving the probe's columns at this step (see :class:`ProbeRow`)."""
        return self.probes.take(*self.probe_data, self.contract)

    def _probe_due(self) -> bool:
        if self.probe_data is None or self.probe_every == 0:
            return False
        if self.probe_every is None:
            if not auto_due(self.rows) or not spaced(self.step - self.probed_at, examples(self.probe_data),
                                                     self.contract_inputs.get("batch_size")):
                return False
            self.probed_at = self.step
            return True
        if self.step >= self.next_probe:
            self.next_probe = next_probe(self.step, self.probe_every)
            return True
        return False

    def record_failure(self, exc: BaseException) -> None:
        """Marks the run failed with the error's first line (training raised; on_train_end never ran)."""
        if getattr(self, "log", None) is None or getattr(self, "finished", False):
            return
        self.status = "failed"
        self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.on_train_end()

    def on_train_end(self, logs=None):
        if self._after_steps and self._after_step in self.model.step_hooks:
            self.model.step_hooks.remove(self._after_step)
        if self.step != self.logged:
            self._log()
        self._read_rows()
        last = self.log.rows[-1] if self.log.rows else None
        if self.probe_data is None and self.probe_after is not None and self.probe_every != 0:
            self.probe_data = first_batch(self.probe_after)  # fit is done with the dataset: nothing moves now
        if "targets" not in self.contract and not self.contract.get("outputs") and self.probe_data is not None:
            # a dataset: its batch, read now
            self.contract = self._contract(self.model.user_model)
        if last is not None and self.probe_data is not None and self.probe_every != 0 and "probe_loss_real" not in last:
            last.update(self._probe()())  # every run ends with a probe
        losses = [r["loss"] for r in self.log.rows if isinstance(r.get("loss"), float) and not math.isnan(r["loss"])]
        valid = [r["val_loss"] for r in self.log.rows if r.get("val_loss") is not None]
        accuracy = [r["val_accuracy"] for r in self.log.rows if r.get("val_accuracy") is not None]
        constant = {"constant_loss": self.contract.get("constant_loss")} \
            if self.contract.get("constant_loss") is not None else {}
        baselines = {**self.model.targets.baselines(), **constant, "loss_at_step0": self.loss_at_step0,
                     **self.baselines}
        summary = {
            "status": "completed" if self.status == "running" else self.status, "error": self.error,
            "steps": self.step, "epochs": self.epoch,
            "final": {"train_loss": losses[-1] if losses else None, "val_loss": valid[-1] if valid else None,
                      "val_accuracy": accuracy[-1] if accuracy else None},
            "best": {"val_loss": min(valid) if valid else None},
            "baselines": baselines, "diverged_at": self.diverged, "wall_time_s": time.perf_counter() - self.t0,
            "at_start": self.at_start or {}, **self.variables, "contract": self.contract,
            "versions": self.versions,
        }
        self._record_started()
        self.log.close(summary)  # metrics.csv, then summary.json: synced side by side, renamed in that order
        self.finished = True
        if (self.params or {}).get("verbose", 1) != 0:  # fit(verbose=0) shows nothing, as Keras' progress bar
            print(end_line(summary, self.run_dir), flush=True)


def _auto_log_every(params) -> int:
    """Steps per row: DEFAULT_LOG_EVERY, or fewer so that a short run logs at least MIN_AUTO_ROWS rows."""
    steps, epochs = (params or {}).get("steps"), (params or {}).get("epochs")
    if not isinstance(steps, int) or not isinstance(epochs, int) or steps <= 0:
        return DEFAULT_LOG_EVERY
    return max(1, min(DEFAULT_LOG_EVERY, (steps * epochs) // MIN_AUTO_ROWS))
