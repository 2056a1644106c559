"""The built-in case: the question's MemN2N language model, studied as any model is.

What makes it a study of its own, behind the same protocol a user's model uses
(a spec kind and a :class:`~diagnose.ablation.trainer.Trainer`):

* :mod:`~diagnose.memn2n.config`: a run's config (model, data, training) and its validation;
* :mod:`~diagnose.memn2n.data`: the text corpora (PTB format) and the synthetic corpus;
* :mod:`~diagnose.memn2n.steps`: the compiled train and eval steps, instrumented;
* :mod:`~diagnose.memn2n.instruments`: the measures only this model has (its attention hops);
* :mod:`~diagnose.memn2n.train`: its host loop, config to run record; :mod:`~diagnose.memn2n.checkpoint`;
* :mod:`~diagnose.memn2n.factors`, :mod:`~diagnose.memn2n.spec`: its factors and its study spec;
* :mod:`~diagnose.memn2n.jobs`: how a worker trains its runs, steps shared between seeds.

The Keras model itself is :mod:`diagnose.models.memn2n`, which knows nothing of diagnosis.
"""

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError


def require_tensorflow() -> None:
    """Refuses, in one line, to train the built-in MemN2N on a Keras backend other than TensorFlow (its compiled
    steps are TensorFlow's); a user's model runs on any."""
    import_tensorflow_quietly()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise DiagnoseError(f"the built-in MemN2N trains on Keras' TensorFlow backend, not {keras.backend.backend()}; "
                            "run it with KERAS_BACKEND=tensorflow (a model of your own runs on any backend)")

