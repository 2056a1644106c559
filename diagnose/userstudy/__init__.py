"""Studies and proofs of the user's own Keras model.

* :mod:`~diagnose.userstudy.spec`: the spec (builder, data, bases, factors) the ablation harness runs;
* :mod:`~diagnose.userstudy.worker`: how one run trains (build, change, instrument, fit);
* :mod:`~diagnose.userstudy.transforms`: the mechanical changes a proof applies to a built model;
* :mod:`~diagnose.userstudy.prove`: proving a run's findings by their fixes over seeds;
* :mod:`~diagnose.userstudy.api`: ``diagnose.study(...)`` from Python.
"""
