"""Official YOLOv7 state_dict names <-> Keras variables, in both directions, in the three forms
official files hold (see `keras_yolov7.layers.official`):

- "training" (`cfg/training`) loads into and is written from a training-form model;
- "deploy" (`cfg/deploy`: plain Detect head with the implicit vectors folded in, no auxiliary
  head) loads into a training-form model whose implicit vectors become neutral (add 0,
  multiply 1), so the head's convs take the official weights unchanged. The P6 auxiliary head and
  its nodes are not in the file and keep their fresh initialisation: fine-tuning from a deploy
  file trains the auxiliary head from scratch;
- "deploy_fused" (deploy after the official `fuse()`) loads into a fused model (`fused=True`).

The table of names is read from the built model itself: each node layer (named `{block}_{i}`)
declares how many official module indices it occupies and its tensors; the converter walks the
nodes in official order, adding up the indices, and ends with the head. Nodes a form does not have
(the P6 auxiliary-only nodes in the deploy forms) do not occur, which shifts the later indices
exactly as the official deploy configs do.
"""

import dataclasses
import functools
import re

import keras
import numpy as np

from keras_yolov7.layers.block import Fusable
from keras_yolov7.layers.official import FORMS
from keras_yolov7.models.builder import BLOCKS
from keras_yolov7.models.builder import required_nodes
from keras_yolov7.models.builder import resolve_architecture

_NODE_NAME = re.compile(rf"(?:{'|'.join(sorted(BLOCKS, key=len, reverse=True))})_(\d+)")
_BUFFERS = ("counter", "anchors", "anchor_grid")
_HEAD_CONV = re.compile(r"model\.(\d+)\.m\.0\.weight")


def official_form(state_dict):
    """Which official form a state_dict holds, from its key names: "training" (implicit `ia`
    vectors), "deploy" (BatchNorm statistics, no implicit vectors) or "deploy_fused" (neither).

    Raises:
        ValueError: the key names hold implicit vectors but no BatchNorm (a training model after
            the official `fuse()`, which no official config describes).
    """
    names = list(state_dict)
    has_bn = any(name.endswith(".running_var") for name in names)
    has_implicit = any(re.fullmatch(r"model\.\d+\.ia\.\d+\.implicit", name) for name in names)
    if has_implicit and not has_bn:
        raise ValueError(
            "the state_dict holds implicit vectors (ia/im) but no BatchNorm statistics: a training "
            "model after the official fuse(), which is not one of the official forms "
            f"{FORMS}; convert the unfused training file, or a deploy one"
        )
    if has_implicit:
        return "training"
    return "deploy" if has_bn else "deploy_fused"


def _find_layers(model):
    """The node layers `{i: layer}` and the heads `{name: layer}`, wherever nested."""
    nodes, heads, seen = {}, {}, set()

    def visit(container):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            match = _NODE_NAME.fullmatch(layer.name)
            if match:
                nodes[int(match.group(1))] = layer
            elif layer.name in ("lead_head", "aux_head"):
                heads[layer.name] = layer
            elif isinstance(layer, keras.Model):
                visit(layer)

    visit(model)
    return nodes, heads


def _model_form(model, form):
    """`form` (default: the model's own, training or deploy_fused), checked against the model."""
    form = form or ("deploy_fused" if model.fused else "training")
    if form not in FORMS:
        raise ValueError(f"unknown official form {form!r}; expected one of {FORMS}")
    if model.fused and form != "deploy_fused":
        raise ValueError(
            f"the official {form} form has unfused BatchNorm; load into a model built with "
            "fused=False, then call get_fused() for inference"
        )
    if not model.fused and form == "deploy_fused":
        raise ValueError(
            "the official deploy_fused form has BatchNorm folded and RepConv merged; load it into "
            "a model built with fused=True (or export a fused model: model.get_fused())"
        )
    return form


def _modules(model, form):
    """The model's layers holding the official `form`, each with its first module index."""
    nodes, heads = _find_layers(model)
    if form != "training":
        lead_only = required_nodes(resolve_architecture(model.architecture), with_aux=False)
        nodes = {i: layer for i, layer in nodes.items() if i in lead_only}
    modules, index = [], 0
    for i in sorted(nodes):
        # keras' own MaxPooling2D / UpSampling2D / Concatenate nodes: one module, no tensors.
        if isinstance(nodes[i], Fusable):
            modules.append((nodes[i], index))
            index += nodes[i].official_span()
        else:
            index += 1
    modules.append((heads["lead_head"], index))
    return modules, heads.get("aux_head") if form == "training" else None


def _layout(model, form):
    """The official tensors of the model in `form`, and the layers holding them."""
    modules, aux_head = _modules(model, form)
    tensors = []
    for layer, index in modules[:-1]:
        tensors += layer.official_tensors(index, form)
    head, index = modules[-1]
    return tensors + head.official_tensors(index, form, auxiliary_head=aux_head), modules


def official_layout(model, num_classes=80, form=None):
    """Every tensor of an official state_dict of `model`, in state_dict order.

    Args:
        model: a built `YOLOv7ObjectDetector`, or a preset name / architecture dict (a model is built).
        num_classes: number of classes, when a model is built.
        form: "training" or "deploy" (unfused models; default "training") or "deploy_fused"
            (fused models, the default for them). A model is built fused for "deploy_fused".

    Returns:
        list of `keras_yolov7.layers.official.OfficialTensor` (name, PyTorch shape, the Keras
        variable or None for buffers, kind).
    """
    if isinstance(model, (str, dict)):
        from keras_yolov7.models import YOLOv7Backbone
        from keras_yolov7.models import YOLOv7ObjectDetector

        backbone = YOLOv7Backbone(architecture=model, fused=form == "deploy_fused")
        model = YOLOv7ObjectDetector(backbone, num_classes=num_classes)
    return _layout(model, _model_form(model, form))[0]


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


def _describe(names, limit=8):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_torch_state_dict(model, state_dict):
    """Loads an official YOLOv7 state_dict into a `YOLOv7ObjectDetector`, strictly.

    The form is recognised from the key names (`official_form`): a training or deploy state_dict
    loads into a training-form model (`fused=False`; deploy: the implicit vectors become add 0 /
    multiply 1, a P6 auxiliary head keeps its initialisation), a deploy_fused one into a fused
    model.

    Args:
        model: a `YOLOv7ObjectDetector` of the same architecture and class count as the state_dict.
        state_dict: mapping from official key names (`model.0.conv.weight`, ...) to numpy arrays
            (or anything `np.asarray` accepts) in PyTorch layout. `num_batches_tracked` entries are
            optional; `anchors` / `anchor_grid`, when present, replace the model's anchors.

    Returns:
        the model.

    Raises:
        ValueError: naming every missing, unexpected or mis-shaped key (with a hint when the class
            count or the preset differs), or the form the model cannot hold.
    """
    form = _model_form(model, official_form(state_dict))
    layout, modules = _layout(model, form)
    expected = {t.name: t for t in layout}
    given = set(state_dict)
    optional = {t.name for t in layout if t.kind in _BUFFERS}
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
        raise ValueError(
            f"{form} state_dict does not match {model.architecture!r} with {model.num_classes} "
            "classes: " + " | ".join(problems) + _mismatch_hint(model, state_dict, layout)
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
            tensor.variable.assign(_to_keras(value, tensor.kind))
    for layer, _ in modules:
        for variable, value in layer.official_defaults(form):
            variable.assign(value)
    return model


def _mismatch_hint(model, state_dict, layout):
    head = next(t for t in layout if _HEAD_CONV.fullmatch(t.name))
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


def to_torch_state_dict(model, form=None):
    """The model's weights under official key names and PyTorch layouts (numpy arrays).

    The inverse of `load_torch_state_dict`: loading the result into a fresh model reproduces the
    weights exactly (the deploy form: the lead outputs). `num_batches_tracked` is written as 0
    (Keras does not count batches).

    Args:
        model: a `YOLOv7ObjectDetector`.
        form: "training" (the default for an unfused model), "deploy" (an unfused model: the
            implicit vectors folded into the head's convs, no auxiliary head) or "deploy_fused"
            (a fused model, its default; `model.get_fused()` makes one).
    """
    form = _model_form(model, form)
    state = {}
    strides = np.asarray(model.strides, np.float32)[:, None, None]
    for tensor in _layout(model, form)[0]:
        if tensor.kind == "counter":
            state[tensor.name] = np.array(0, np.int64)
        elif tensor.kind == "anchors":
            state[tensor.name] = (model.anchors / strides).astype(np.float32)
        elif tensor.kind == "anchor_grid":
            state[tensor.name] = model.anchors.reshape(tensor.shape).astype(np.float32)
        else:
            value = tensor.value() if tensor.value is not None else tensor.variable
            value = np.asarray(keras.ops.convert_to_numpy(value), np.float32)
            state[tensor.name] = _to_torch(value, tensor.kind)
    return state


def _head_index(state_dict):
    """The module index of the state_dict's head (`model.{i}.m.0.weight`), else None."""
    found = {int(m.group(1)) for m in map(_HEAD_CONV.fullmatch, state_dict) if m}
    return found.pop() if len(found) == 1 else None


def preset_candidates(state_dict):
    """Presets whose lead head reads feature maps as wide as the state_dict's head convs take
    (a cheap first filter on the architectures' data; `names_match` compares every name)."""
    from keras_yolov7.models.configs import ARCHITECTURES

    head = _head_index(state_dict)
    widths = []
    while f"model.{head}.m.{len(widths)}.weight" in state_dict:
        shape = np.shape(state_dict[f"model.{head}.m.{len(widths)}.weight"])
        widths.append(shape[1] if len(shape) == 4 else None)
    return [
        preset
        for preset, arch in ARCHITECTURES.items()
        if widths and widths == [arch["layers"][i][2].get("filters") for i in arch["lead"]]
    ]


def names_match(state_dict, layout):
    """Whether the state_dict has exactly the names of `layout` (a list of `OfficialTensor`);
    `num_batches_tracked` and the anchor buffers are optional."""
    given = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    names = {t.name for t in layout if t.kind != "counter"}
    without_anchors = {n for n in names if not n.endswith((".anchors", ".anchor_grid"))}
    return given in (names, without_anchors)


@functools.lru_cache(maxsize=None)
def _preset_layouts(preset, fused):
    """`{form: layout}` of the forms a one-class model of `preset` holds (names do not depend on
    the class count), kept without the model's variables."""
    from keras_yolov7.models import YOLOv7ObjectDetector

    model = YOLOv7ObjectDetector.from_preset(preset, num_classes=1, fused=fused)
    forms = ("deploy_fused",) if fused else ("training", "deploy")
    return {
        form: tuple(dataclasses.replace(t, variable=None, value=None) for t in _layout(model, form)[0])
        for form in forms
    }


def identify_preset(state_dict):
    """The preset whose official key names (in the state_dict's form) match exactly, else None."""
    try:
        form = official_form(state_dict)
    except ValueError:
        return None
    for preset in preset_candidates(state_dict):
        if names_match(state_dict, _preset_layouts(preset, form == "deploy_fused")[form]):
            return preset
    return None


def num_classes_of(state_dict, anchors_per_level=3):
    """Number of classes of an official state_dict, from its head convs' width."""
    outputs = np.shape(state_dict[f"model.{_head_index(state_dict)}.m.0.weight"])[0]
    return int(outputs) // anchors_per_level - 5
