"""Official YOLOv7 state_dict names <-> Keras variables, in both directions.

The official training configs number their modules `model.{i}` in yaml order; one Keras block spans
several of those indices (an ELAN of depth n spans n + 4: two split convs, n chain convs, the concat
and the transition). `official_layout` walks an architecture and lists every official tensor with
its PyTorch shape and the Keras variable it corresponds to, so loading and exporting are one table.
"""

import dataclasses

import keras
import numpy as np

from keras_yolov7.models.builder import is_second_branch
from keras_yolov7.models.builder import resolve_architecture


@dataclasses.dataclass(frozen=True)
class OfficialTensor:
    """One official state_dict entry.

    Attributes:
        name: official key, e.g. `model.4.cv1.conv.weight`.
        shape: PyTorch shape (conv weights `(out, in, kh, kw)`).
        layer: name of the top-level Keras layer holding the variable (None for buffers that have
            no variable: `num_batches_tracked`, `anchors`, `anchor_grid`).
        path: attribute / index path from that layer to the variable.
        kind: "kernel" (OIHW <-> HWIO), "vector", "implicit" ((1, C, 1, 1) <-> (C,)), "counter",
            "anchors" (grid units) or "anchor_grid" (pixels).
    """

    name: str
    shape: tuple
    layer: str = None
    path: tuple = ()
    kind: str = "vector"


def _bn(prefix, layer, path, channels):
    return [
        OfficialTensor(f"{prefix}.weight", (channels,), layer, path + ("gamma",)),
        OfficialTensor(f"{prefix}.bias", (channels,), layer, path + ("beta",)),
        OfficialTensor(f"{prefix}.running_mean", (channels,), layer, path + ("moving_mean",)),
        OfficialTensor(f"{prefix}.running_var", (channels,), layer, path + ("moving_variance",)),
        OfficialTensor(f"{prefix}.num_batches_tracked", (), kind="counter"),
    ]


def _conv(prefix, layer, path, c_in, c_out, k):
    """A Conv unit: `{prefix}.conv.weight` + `{prefix}.bn.*`."""
    kernel = OfficialTensor(
        f"{prefix}.conv.weight", (c_out, c_in, k, k), layer, path + ("conv", "kernel"), "kernel"
    )
    return [kernel] + _bn(f"{prefix}.bn", layer, path + ("bn",), c_out)


def _repconv(prefix, layer, c_in, c_out, k, strides):
    tensors = []
    if c_in == c_out and strides == 1:
        tensors += _bn(f"{prefix}.rbr_identity", layer, ("identity_bn",), c_in)
    tensors.append(
        OfficialTensor(
            f"{prefix}.rbr_dense.0.weight",
            (c_out, c_in, k, k),
            layer,
            ("dense_convs", -1, "kernel"),
            "kernel",
        )
    )
    tensors += _bn(f"{prefix}.rbr_dense.1", layer, ("dense_bn",), c_out)
    tensors.append(
        OfficialTensor(
            f"{prefix}.rbr_1x1.0.weight", (c_out, c_in, 1, 1), layer, ("pointwise_conv", "kernel"), "kernel"
        )
    )
    tensors += _bn(f"{prefix}.rbr_1x1.1", layer, ("pointwise_bn",), c_out)
    return tensors


def _elan(index, layer, path, c_in, args):
    depth, branch, chain = args["depth"], args["branch_filters"], args["chain_filters"]
    tensors = _conv(f"model.{index}", layer, path + ("cv1",), c_in, branch, 1)
    tensors += _conv(f"model.{index + 1}", layer, path + ("cv2",), c_in, branch, 1)
    width = branch
    for k in range(depth):
        tensors += _conv(f"model.{index + 2 + k}", layer, path + ("chain", k), width, chain, 3)
        width = chain
    widths = [branch, branch] + [chain] * depth
    concat = sum(widths[depth + 2 + t] for t in args["taps"])
    tensors += _conv(
        f"model.{index + depth + 3}", layer, path + ("transition",), concat, args["filters"], 1
    )
    return tensors


def node_span(block, args):
    """How many official module indices one architecture node occupies."""
    if block == "elan":
        return args["depth"] + 4
    if block == "eelan":
        return 2 * (args["depth"] + 4) + 1
    if block == "mp":
        return 5
    if block == "sppcspc_tiny":
        return 9
    return 1


def official_layout(architecture, num_classes, auxiliary=True):
    """Every tensor of the official training-config state_dict, in state_dict order.

    Args:
        architecture: preset name or architecture dict.
        num_classes: number of classes.
        auxiliary: include the auxiliary head (`m2`) of the P6 models.

    Returns:
        list of `OfficialTensor`.
    """
    arch = resolve_architecture(architecture)
    nodes = arch["layers"]
    channels = {-1: 3}
    tensors = []
    index = 0
    for i, (source, block, args) in enumerate(nodes):
        name = f"{block}_{i}"

        def source_channels(src):
            if is_second_branch(src):
                return channels[int(src[1])]
            if isinstance(src, (list, tuple)):
                return [source_channels(s) for s in src]
            return channels[i + src if src < 0 else src]

        c_in = source_channels(source)
        if block == "conv":
            k = args.get("kernel_size", 1)
            tensors += _conv(f"model.{index}", name, (), c_in, args["filters"], k)
            channels[i] = args["filters"]
        elif block == "repconv":
            k, s = args.get("kernel_size", 3), args.get("strides", 1)
            tensors += _repconv(f"model.{index}", name, c_in, args["filters"], k, s)
            channels[i] = args["filters"]
        elif block == "elan":
            tensors += _elan(index, name, (), c_in, args)
            channels[i] = args["filters"]
        elif block == "eelan":
            span = args["depth"] + 4
            tensors += _elan(index, name, ("branch_1",), c_in, args)
            tensors += _elan(index + span, name, ("branch_2",), c_in, args)
            channels[i] = args["filters"]
        elif block == "mp":
            x_in = c_in[0] if isinstance(c_in, list) else c_in
            skips = c_in[1:] if isinstance(c_in, list) else []
            f = args["filters"]
            tensors += _conv(f"model.{index + 1}", name, ("pool_conv",), x_in, f, 1)
            tensors += _conv(f"model.{index + 2}", name, ("reduce_conv",), x_in, f, 1)
            tensors += _conv(f"model.{index + 3}", name, ("down_conv",), f, f, 3)
            channels[i] = 2 * f + sum(skips)
        elif block == "downc":
            half = args["filters"] // 2
            tensors += _conv(f"model.{index}.cv1", name, ("reduce_conv",), c_in, c_in, 1)
            tensors += _conv(f"model.{index}.cv2", name, ("down_conv",), c_in, half, 3)
            tensors += _conv(f"model.{index}.cv3", name, ("pool_conv",), c_in, half, 1)
            channels[i] = args["filters"]
        elif block == "sppcspc":
            c = args["filters"]
            pools = len(args.get("pool_sizes", (5, 9, 13)))
            specs = {
                "cv1": (c_in, 1),
                "cv2": (c_in, 1),
                "cv3": (c, 3),
                "cv4": (c, 1),
                "cv5": ((pools + 1) * c, 1),
                "cv6": (c, 3),
                "cv7": (2 * c, 1),
            }
            for key, (cin, k) in specs.items():
                tensors += _conv(f"model.{index}.{key}", name, ("convs", key), cin, c, k)
            channels[i] = c
        elif block == "sppcspc_tiny":
            c = args["filters"]
            pools = len(args.get("pool_sizes", (5, 9, 13)))
            offsets = [(0, c_in), (1, c_in), (6, (pools + 1) * c), (8, 2 * c)]
            for k, (offset, cin) in enumerate(offsets):
                tensors += _conv(f"model.{index + offset}", name, ("convs", k), cin, c, 1)
            channels[i] = c
        elif block == "reorg":
            channels[i] = 4 * c_in
        elif block == "concat":
            channels[i] = sum(c_in)
        else:  # maxpool, upsample
            channels[i] = c_in
        index += node_span(block, args)

    tensors += _head_layout(arch, num_classes, index, channels, auxiliary)
    return tensors


def _head_layout(arch, num_classes, index, channels, auxiliary):
    levels = len(arch["strides"])
    anchors_per_level = len(arch["anchors"][0]) // 2
    outputs = anchors_per_level * (5 + num_classes)
    prefix = f"model.{index}"
    tensors = [
        OfficialTensor(f"{prefix}.anchors", (levels, anchors_per_level, 2), kind="anchors"),
        OfficialTensor(
            f"{prefix}.anchor_grid", (levels, 1, anchors_per_level, 1, 1, 2), kind="anchor_grid"
        ),
    ]

    def convs(key, layer, sources):
        out = []
        for level, source in enumerate(sources):
            c_in = channels[int(source[1])] if is_second_branch(source) else channels[source]
            out.append(
                OfficialTensor(
                    f"{prefix}.{key}.{level}.weight",
                    (outputs, c_in, 1, 1),
                    layer,
                    ("convs", level, "kernel"),
                    "kernel",
                )
            )
            out.append(
                OfficialTensor(
                    f"{prefix}.{key}.{level}.bias", (outputs,), layer, ("convs", level, "bias")
                )
            )
        return out

    lead = arch["lead"]
    tensors += convs("m", "lead_head", lead)
    if auxiliary and arch.get("aux"):
        tensors += convs("m2", "aux_head", arch["aux"])
    for level, source in enumerate(lead):
        tensors.append(
            OfficialTensor(
                f"{prefix}.ia.{level}.implicit",
                (1, channels[source], 1, 1),
                "lead_head",
                ("implicit_add", level, "implicit"),
                "implicit",
            )
        )
    for level in range(levels):
        tensors.append(
            OfficialTensor(
                f"{prefix}.im.{level}.implicit",
                (1, outputs, 1, 1),
                "lead_head",
                ("implicit_multiply", level, "implicit"),
                "implicit",
            )
        )
    return tensors


def _find_layer(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


def _variable(model, tensor):
    obj = _find_layer(model, tensor.layer)
    for step in tensor.path:
        obj = obj[step] if isinstance(step, int) or isinstance(obj, dict) else getattr(obj, step)
    return obj


def _to_keras(value, kind):
    if kind == "kernel":
        return np.transpose(value, (2, 3, 1, 0))
    if kind == "implicit":
        return value.reshape(-1)
    return value


def _to_torch(value, kind):
    if kind == "kernel":
        return np.transpose(value, (3, 2, 0, 1))
    if kind == "implicit":
        return value.reshape(1, -1, 1, 1)
    return value


def _check_model(model):
    if getattr(model, "fused", False):
        raise ValueError(
            "official state_dicts hold the training form; load into a model built with fused=False, "
            "then call get_fused()"
        )
    if getattr(model, "elan_chain_block", "conv") != "conv":
        raise ValueError(
            f"official checkpoints use plain 3x3 convs in ELAN; this model has "
            f"elan_chain_block={model.elan_chain_block!r}"
        )


def _describe(names, limit=8):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_torch_state_dict(model, state_dict):
    """Loads an official YOLOv7 training-config state_dict into a `YOLOv7ObjectDetector`, strictly.

    Args:
        model: a `YOLOv7ObjectDetector` in training form (`fused=False`) of the same architecture and
            class count as the state_dict.
        state_dict: mapping from official key names (`model.0.conv.weight`, ...) to numpy arrays
            (or anything `np.asarray` accepts) in PyTorch layout. `num_batches_tracked` entries are
            optional; `anchors` / `anchor_grid`, when present, replace the model's anchors.

    Raises:
        ValueError: naming every missing, unexpected or mis-shaped key (with a hint when the class
            count or the preset differs).
    """
    _check_model(model)
    layout = official_layout(model.architecture, model.num_classes, model.has_auxiliary_head)
    expected = {t.name: t for t in layout}
    given = set(state_dict)
    optional = {t.name for t in layout if t.kind in ("counter", "anchors", "anchor_grid")}
    missing = set(expected) - given - optional
    unexpected = given - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    shapes = []
    for name in sorted(given & set(expected)):
        actual = tuple(np.shape(state_dict[name]))
        if actual != tuple(expected[name].shape):
            shapes.append(f"{name} has shape {actual}, expected {tuple(expected[name].shape)}")
    if shapes:
        problems.append("mis-shaped keys: " + "; ".join(shapes[:8]))
    if problems:
        hint = _mismatch_hint(model, state_dict, layout)
        raise ValueError(
            f"state_dict does not match {model.architecture!r} with {model.num_classes} classes: "
            + " | ".join(problems)
            + hint
        )

    for tensor in layout:
        if tensor.name not in state_dict:
            continue
        value = np.asarray(state_dict[tensor.name], np.float32)
        if tensor.kind == "anchors":
            model.anchors = value * np.asarray(model.strides, np.float32)[:, None, None]
        elif tensor.kind == "anchor_grid":
            model.anchors = value.reshape(model.anchors.shape)
        elif tensor.kind != "counter":
            _variable(model, tensor).assign(_to_keras(value, tensor.kind))
    return model


def _mismatch_hint(model, state_dict, layout):
    head = next(t for t in layout if t.name.endswith(".m.0.weight"))
    if head.name in state_dict:
        outputs = np.shape(state_dict[head.name])[0]
        per_anchor = outputs // len(model.anchors[0])
        if per_anchor - 5 != model.num_classes:
            return (
                f" (the state_dict has {per_anchor - 5} classes; build the model with "
                f"num_classes={per_anchor - 5})"
            )
    preset = identify_preset(state_dict)
    if preset is not None and preset != model.architecture:
        return f" (the state_dict looks like preset {preset!r})"
    return ""


def to_torch_state_dict(model):
    """The model's weights under official key names and PyTorch layouts (numpy arrays).

    The inverse of `load_torch_state_dict`: loading the result into a fresh model reproduces the
    weights exactly. `num_batches_tracked` is written as 0 (Keras does not count batches).
    """
    _check_model(model)
    state = {}
    strides = np.asarray(model.strides, np.float32)[:, None, None]
    for tensor in official_layout(model.architecture, model.num_classes, model.has_auxiliary_head):
        if tensor.kind == "counter":
            state[tensor.name] = np.array(0, np.int64)
        elif tensor.kind == "anchors":
            state[tensor.name] = (model.anchors / strides).astype(np.float32)
        elif tensor.kind == "anchor_grid":
            state[tensor.name] = model.anchors.reshape(tensor.shape).astype(np.float32)
        else:
            value = np.asarray(keras.ops.convert_to_numpy(_variable(model, tensor)), np.float32)
            state[tensor.name] = _to_torch(value, tensor.kind)
    return state


def identify_preset(state_dict):
    """The preset whose official key names match the state_dict's exactly, else None."""
    from keras_yolov7.models.configs import ARCHITECTURES

    given = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    for preset in ARCHITECTURES:
        names = {
            t.name for t in official_layout(preset, 1) if t.kind != "counter"
        }
        if names == given or names - {n for n in names if ".anchor" in n} == given:
            return preset
    return None


def num_classes_of(state_dict, preset):
    """Number of classes of an official state_dict of a known preset."""
    arch = resolve_architecture(preset)
    head = next(t for t in official_layout(preset, 1) if t.name.endswith(".m.0.weight"))
    anchors_per_level = len(arch["anchors"][0]) // 2
    return np.shape(state_dict[head.name])[0] // anchors_per_level - 5
