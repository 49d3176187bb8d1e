"""Turns an architecture (see configs.py) into the functional graph of a YOLOv7 network."""

import copy

import keras

from keras_yolov7 import layers as L
from keras_yolov7.models.configs import ARCHITECTURES

BLOCKS = (
    "conv",
    "repconv",
    "elan",
    "eelan",
    "mp",
    "downc",
    "sppcspc",
    "sppcspc_tiny",
    "reorg",
    "maxpool",
    "upsample",
    "concat",
)


def resolve_architecture(architecture):
    """A preset name or an architecture dict -> a validated deep copy of the architecture dict."""
    if isinstance(architecture, str):
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown preset {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
            )
        return copy.deepcopy(ARCHITECTURES[architecture])
    if not isinstance(architecture, dict):
        raise TypeError(
            f"architecture must be a preset name or a dict, got {type(architecture).__name__}"
        )
    missing = {"activation", "anchors", "strides", "layers", "lead"} - set(architecture)
    if missing:
        raise ValueError(f"architecture is missing keys {sorted(missing)}")
    if len(architecture["anchors"]) != len(architecture["strides"]):
        raise ValueError(
            f"architecture has {len(architecture['anchors'])} anchor levels but "
            f"{len(architecture['strides'])} strides"
        )
    for index, (_, block, _) in enumerate(architecture["layers"]):
        if block not in BLOCKS:
            raise ValueError(f"layer {index} has unknown block {block!r}; expected one of {BLOCKS}")
    return copy.deepcopy(architecture)


def is_second_branch(source):
    return isinstance(source, (list, tuple)) and len(source) == 2 and source[0] == "second_branch"


def _sources(source, index):
    """Absolute node indices a node reads (-1 is the network input)."""
    if is_second_branch(source):
        return [int(source[1])]
    if isinstance(source, (list, tuple)):
        return [i for s in source for i in _sources(s, index)]
    return [index + source if source < 0 else source]


def required_nodes(architecture, with_aux):
    """Indices of the nodes the heads depend on (auxiliary-only nodes are left out when not needed)."""
    nodes = architecture["layers"]
    wanted = list(architecture["lead"])
    if with_aux:
        for source in architecture.get("aux", []):
            wanted += _sources(source, len(nodes))
    needed = set()
    while wanted:
        index = wanted.pop()
        if index < 0 or index in needed:
            continue
        needed.add(index)
        wanted += _sources(nodes[index][0], index)
    return needed


def make_layer(block, args, activation, fused, chain_block, name, return_second_branch=False):
    """One node of the architecture as a Keras layer."""
    act = {"activation": activation, "fused": fused}
    if block == "conv":
        return L.Conv(**args, **act, name=name)
    if block == "repconv":
        return L.RepConv(**args, **act, name=name)
    if block == "elan":
        return L.ELAN(**args, **act, chain_block=chain_block, name=name)
    if block == "eelan":
        return L.EELAN(
            **args,
            **act,
            chain_block=chain_block,
            return_second_branch=return_second_branch,
            name=name,
        )
    if block == "mp":
        return L.MPTransition(**args, **act, name=name)
    if block == "downc":
        return L.DownC(**args, **act, name=name)
    if block == "sppcspc":
        return L.SPPCSPC(**args, **act, name=name)
    if block == "sppcspc_tiny":
        return L.SPPCSPCTiny(**args, **act, name=name)
    if block == "reorg":
        return L.ReOrg(name=name)
    if block == "maxpool":
        return keras.layers.MaxPooling2D(2, strides=2, name=name)
    if block == "upsample":
        return keras.layers.UpSampling2D(2, interpolation="nearest", name=name)
    if block == "concat":
        return keras.layers.Concatenate(axis=-1, name=name)
    raise ValueError(f"unknown block {block!r}; expected one of {BLOCKS}")


def level_names(strides, auxiliary=False):
    """Names of the output levels: `P3`, `P4`, ... from the strides (`aux_P3`, ... for the
    auxiliary feature maps)."""
    names = [f"P{int(stride).bit_length() - 1}" for stride in strides]
    return [f"aux_{name}" for name in names] if auxiliary else names


def build_features(images, architecture, fused=False, chain_block="conv"):
    """Builds the YOLOv7 network (backbone and neck) on `images` and returns its feature maps.

    Args:
        images: a `keras.Input` of shape `(batch, height, width, 3)`, pixels 0..255.
        architecture: an architecture dict (see configs.py).
        fused: build the inference form (BN folded, RepConv merged) without the nodes that only
            feed the auxiliary head.
        chain_block: "conv" or "repconvn" for the 3x3 chain convs of every ELAN.

    Returns:
        dict of feature maps `(batch, H_l, W_l, channels_l)`: the lead levels `P3`, `P4`, ... (one
        per stride) and, unless fused, the auxiliary levels `aux_P3`, ... of the P6 models.
    """
    nodes = architecture["layers"]
    with_aux = not fused and bool(architecture.get("aux"))
    needed = required_nodes(architecture, with_aux)
    second_branch_of = {
        int(nodes[i][0][1]) for i in needed if is_second_branch(nodes[i][0])
    }
    strides = architecture["strides"]

    outputs = {-1: L.ImageInput(max(strides), name="image_input")(images)}
    second = {}

    def lookup(source, index):
        if is_second_branch(source):
            return second[int(source[1])]
        if isinstance(source, (list, tuple)):
            return [lookup(s, index) for s in source]
        return outputs[index + source if source < 0 else source]

    for index, (source, block, args) in enumerate(nodes):
        if index not in needed:
            continue
        layer = make_layer(
            block,
            args,
            architecture["activation"],
            fused,
            chain_block,
            name=f"{block}_{index}",
            return_second_branch=index in second_branch_of,
        )
        out = layer(lookup(source, index))
        if index in second_branch_of:
            out, second[index] = out
        outputs[index] = out

    features = {
        name: outputs[i] for name, i in zip(level_names(strides), architecture["lead"])
    }
    if with_aux:
        aux = [lookup(s, len(nodes)) for s in architecture["aux"]]
        features.update(zip(level_names(strides, auxiliary=True), aux))
    return features
