"""The official PyTorch names of the layers' tensors: what each layer declares to the converter.

The official YOLOv7 configs number their modules `model.{i}` in yaml order, and official files
hold a model in one of three forms:

- "training": `cfg/training` (IDetect head with implicit layers, the P6 auxiliary head `m2`),
- "deploy": `cfg/deploy` (plain Detect head with the implicit vectors folded into `m`, no
  auxiliary head and none of its nodes; BatchNorm and RepConv branches as in training),
- "deploy_fused": deploy after the official `fuse()` (BatchNorm folded into `conv.{weight,bias}`,
  RepConv merged into `rbr_reparam.{weight,bias}`).

An unfused layer holds the training and deploy forms, a fused layer (`fused=True`) the
deploy_fused form. Each layer says how many official indices it occupies (`official_span()`) and,
given its first index, its tensors in state_dict order (`official_tensors(index, form)`); the
converter (`keras_yolov7.convert`) walks a built model and adds up the indices.
"""

import dataclasses

FORMS = ("training", "deploy", "deploy_fused")


@dataclasses.dataclass(frozen=True)
class OfficialTensor:
    """One entry of an official state_dict.

    Attributes:
        name: official key, e.g. `model.4.cv1.conv.weight`.
        shape: PyTorch shape (conv weights `(out, in, kh, kw)`).
        variable: the Keras variable holding it, or None for buffers without one
            (`num_batches_tracked`, `anchors`, `anchor_grid`).
        kind: "kernel" (PyTorch OIHW <-> Keras HWIO), "vector", "implicit" ((1, C, 1, 1) <->
            (C,)), "counter" (`num_batches_tracked`), "anchors" (grid units) or "anchor_grid"
            (pixels).
        value: for an entry computed from several variables (the deploy head's convs with the
            implicit vectors folded in), a function returning it in the variable's Keras layout;
            loading assigns the official value to `variable` as it is.
    """

    name: str
    shape: tuple
    variable: object = None
    kind: str = "vector"
    value: object = None


def check_form(layer, form):
    """Raises unless `layer` (with a `fused` attribute) can hold the official `form`."""
    if form not in FORMS:
        raise ValueError(f"unknown official form {form!r}; expected one of {FORMS}")
    forms = ("deploy_fused",) if layer.fused else ("training", "deploy")
    if form not in forms:
        state = "fused" if layer.fused else "unfused"
        raise ValueError(
            f"{layer.name} is {state}: it holds the official {' and '.join(forms)} form"
            f"{'s' if len(forms) > 1 else ''}, not {form!r}"
        )


def kernel(name, variable):
    """A conv kernel: Keras `(kh, kw, in, out)` <-> PyTorch `(out, in, kh, kw)`."""
    kh, kw, c_in, c_out = (int(s) for s in variable.shape)
    return OfficialTensor(name, (c_out, c_in, kh, kw), variable, "kernel")


def vector(name, variable):
    return OfficialTensor(name, tuple(int(s) for s in variable.shape), variable)


def implicit(name, variable):
    return OfficialTensor(name, (1, int(variable.shape[0]), 1, 1), variable, "implicit")


def batch_norm(prefix, bn):
    """A BatchNorm2d: `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`."""
    return [
        vector(f"{prefix}.weight", bn.gamma),
        vector(f"{prefix}.bias", bn.beta),
        vector(f"{prefix}.running_mean", bn.moving_mean),
        vector(f"{prefix}.running_var", bn.moving_variance),
        OfficialTensor(f"{prefix}.num_batches_tracked", (), kind="counter"),
    ]
