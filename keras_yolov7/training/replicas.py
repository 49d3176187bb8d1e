"""Cross-replica sums inside a train step: what a loss over the global batch needs under tf.distribute.

Under `tf.distribute` (`MirroredStrategy`) every replica runs the train step on its share of the
global batch and Keras sums the replicas' gradients. A loss made of means over the batch (YOLOv7's
box and class terms are means over the positives, objectness a mean over all cells) is then only
right for the global batch if every normaliser is the global one: these helpers give the replica
count and the sum over replicas, from inside the step.

JAX's `keras.distribution.DataParallel` compiles ONE global computation over the sharded batch, so
its train step is a single replica here (the loss is global as written); the torch backend has no
multi-device trainer in Keras. On both, and on TensorFlow without a strategy, the helpers are the
identity.
"""

import keras


def replicas_in_sync():
    """Number of replicas running the current train step in lockstep (1 outside tf.distribute)."""
    context = _tensorflow_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def sum_over_replicas(value):
    """`value` (a tensor, or a list of tensors) summed over the replicas of the running train step.

    Returns `value` itself when the step runs as one replica. Every replica must call it at the
    same point of the step (it is a collective operation).
    """
    context = _tensorflow_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return _tensorflow_all_reduce_sum(context, value)


def _tensorflow_replica_context():
    """The tf.distribute replica context of the running step (TensorFlow backend), else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    # None in a cross-replica context (callbacks, evaluation outside the step): nothing to sum.
    return tf.distribute.get_replica_context()


def _tensorflow_all_reduce_sum(context, value):
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
