"""The three parameter groups of the official YOLOv7 optimizer, found by layer type and variable role."""

import collections

import keras

from keras_yolov7.layers.implicit import ImplicitAdd
from keras_yolov7.layers.implicit import ImplicitMultiply

GROUP_NAMES = ("no_decay", "decay", "bias")

# Normalisation layers whose `gamma` is a scale (no weight decay) and `beta` an offset (a bias).
# The official code only meets BatchNorm2d; layer and group normalisation scales are treated the
# same way because decaying a normalisation scale towards 0 regularises nothing.
NORMALIZATION_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
)
IMPLICIT_LAYERS = (ImplicitAdd, ImplicitMultiply)


class ParameterGroups(collections.namedtuple("ParameterGroups", GROUP_NAMES)):
    """Trainable variables split like the official optimizer's `pg0`, `pg1` and `pg2`.

    Attributes:
        no_decay: `pg0`, normalisation scales (BatchNormalization `gamma`) and the implicit vectors
            of ImplicitAdd / ImplicitMultiply. No weight decay; warmup learning rate 0 -> lr.
        decay: `pg1`, every other weight (Conv2D / Dense kernels, ...). Weight decay; warmup
            learning rate 0 -> lr.
        bias: `pg2`, every `bias` and the BatchNormalization `beta` (its bias). No weight decay;
            warmup learning rate `warmup_bias_lr` -> lr.
    """

    __slots__ = ()

    def group_of(self):
        """`{id(variable): group name}` for every variable in the groups."""
        return {
            id(variable): name
            for name, variables in zip(GROUP_NAMES, self)
            for variable in variables
        }


def parameter_groups(model):
    """Split the trainable variables of any Keras model into the official three groups.

    Classification is by the owning layer's type and the variable's role, never by name matching:
    normalisation layers give `gamma` to `no_decay` and `beta` to `bias`; ImplicitAdd /
    ImplicitMultiply give `implicit` to `no_decay`; any layer's `bias` attribute goes to `bias`;
    every remaining trainable variable (kernels of Conv2D, Dense, ...) goes to `decay`, as the
    official code does with every module's `weight`. Frozen (non-trainable) variables are left out,
    as the optimizer never sees them.

    Args:
        model: a built `keras.Model` (or layer).

    Returns:
        `ParameterGroups(no_decay, decay, bias)`, each a list of variables in the order of
        `model.trainable_variables`; together they hold each trainable variable exactly once.
    """
    trainable = list(model.trainable_variables)
    if not trainable:
        raise ValueError(
            f"model {model.name!r} has no trainable variables; build it (call it on an input) first"
        )
    roles = {}
    # `_flatten_layers` is the only Keras traversal that reaches layers nested inside custom layers
    # (e.g. the BatchNormalization inside keras_yolov7.layers.Conv); `model.layers` stops at the top.
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, NORMALIZATION_LAYERS):
            _claim(roles, getattr(layer, "gamma", None), "no_decay")
            _claim(roles, getattr(layer, "beta", None), "bias")
        elif isinstance(layer, IMPLICIT_LAYERS):
            _claim(roles, layer.implicit, "no_decay")
        else:
            _claim(roles, getattr(layer, "bias", None), "bias")
    groups = {name: [] for name in GROUP_NAMES}
    for variable in trainable:
        groups[roles.get(id(variable), "decay")].append(variable)
    return ParameterGroups(**groups)


def _claim(roles, variable, group):
    if isinstance(variable, keras.Variable):
        roles.setdefault(id(variable), group)
