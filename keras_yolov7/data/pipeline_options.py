"""The `tf.data.Options` of the training and validation pipelines.

tf.data's autotuning model runs in a thread that sleeps between optimisation rounds, the sleep
doubling up to 60 s while the iterator lives. Deleting an iterator (Keras makes a new one at every
epoch of `fit(dataset, epochs=N)` and at every evaluation) waits for that thread to wake up: measured
on TensorFlow 2.21, the first step of an epoch then took up to 42 s longer, idle, in about half of
the epochs (yolov7_tiny, 320 px, 20 steps of about 2 s: `fit` went from 90% of the isolated step to
about 55%). With autotuning off no epoch waited (docs/performance.md). What autotuning would have
chosen is set by hand: the parallel maps run one call per core (`AUTOTUNE` means that when the
model is off) and the final `prefetch(AUTOTUNE)` keeps its own buffer sizing, which does not use
the model.
"""

import tensorflow as tf


def pipeline_options():
    """`tf.data.Options` for the pipelines of this package: autotuning model off (see above)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
