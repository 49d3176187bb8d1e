"""The seven YOLOv7 architectures as plain data.

An architecture is a dict:

- `activation`: "silu" or "leaky_relu" (yolov7-tiny).
- `anchors`: per level, three `(width, height)` anchors in pixels.
- `strides`: per level, in pixels.
- `layers`: list of `(source, block, args)` nodes, in the official configs' order. `source` is
  `-1` (the previous node), another negative offset, an absolute node index, a list of these
  (for `concat`, and for `mp` whose extra inputs are skips appended to its concat), or
  `["second_branch", i]`: the second ELAN branch of EELAN node `i`, before the sum.
- `lead`: node indices feeding the lead head (one per level, finest first).
- `aux`: node indices feeding the auxiliary head (P6 models), or absent.
- `input_size`: the size the official model is trained at.
- `family`: which official hyperparameters (loss gains, augmentation, schedule) the model trains
  with: "tiny" (hyp.scratch.tiny), "p5" (hyp.scratch.p5) or "p6" (hyp.scratch.p6).

Blocks: conv, repconv, elan, eelan, mp (MPTransition), downc, sppcspc, sppcspc_tiny, reorg,
maxpool (2x2, stride 2), upsample (nearest, x2), concat. Adding a scale means adding data here.
"""

P5_ANCHORS = ((12, 16, 19, 36, 40, 28), (36, 75, 76, 55, 72, 146), (142, 110, 192, 243, 459, 401))
TINY_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
P6_ANCHORS = (
    (19, 27, 44, 40, 38, 94),
    (96, 68, 86, 152, 180, 137),
    (140, 301, 303, 264, 238, 542),
    (436, 615, 739, 380, 925, 792),
)


def conv(filters, kernel_size=1, strides=1, source=-1):
    return (source, "conv", {"filters": filters, "kernel_size": kernel_size, "strides": strides})


def elan(filters, branch_filters, chain_filters, depth, taps, source=-1, block="elan"):
    args = {
        "filters": filters,
        "branch_filters": branch_filters,
        "chain_filters": chain_filters,
        "depth": depth,
        "taps": list(taps),
    }
    return (source, block, args)


def neck_taps(depth):
    """The neck ELANs concatenate every output: -1 .. -(depth + 2)."""
    return list(range(-1, -(depth + 3), -1))


def node(block, source=-1, **args):
    return (source, block, args)


def _up(filters, lateral):
    """Reduce, upsample, reduce the lateral backbone map, concat [lateral, upsampled]."""
    return [conv(filters), node("upsample"), conv(filters, source=lateral), node("concat", [-1, -2])]


YOLOV7_TINY_LAYERS = [
    conv(32, 3, 2),  # 0 P1/2
    conv(64, 3, 2),  # 1 P2/4
    elan(64, 32, 32, 2, (-1, -2, -3, -4)),  # 2
    node("maxpool"),  # 3 P3/8
    elan(128, 64, 64, 2, (-1, -2, -3, -4)),  # 4
    node("maxpool"),  # 5 P4/16
    elan(256, 128, 128, 2, (-1, -2, -3, -4)),  # 6
    node("maxpool"),  # 7 P5/32
    elan(512, 256, 256, 2, (-1, -2, -3, -4)),  # 8
    node("sppcspc_tiny", filters=256),  # 9
    *_up(128, 6),  # 10-13
    elan(128, 64, 64, 2, (-1, -2, -3, -4)),  # 14
    *_up(64, 4),  # 15-18
    elan(64, 32, 32, 2, (-1, -2, -3, -4)),  # 19 P3 out
    conv(128, 3, 2),  # 20
    node("concat", [-1, 14]),  # 21
    elan(128, 64, 64, 2, (-1, -2, -3, -4)),  # 22 P4 out
    conv(256, 3, 2),  # 23
    node("concat", [-1, 9]),  # 24
    elan(256, 128, 128, 2, (-1, -2, -3, -4)),  # 25 P5 out
    conv(128, 3, 1, source=19),  # 26
    conv(256, 3, 1, source=22),  # 27
    conv(512, 3, 1, source=25),  # 28
]

YOLOV7_LAYERS = [
    conv(32, 3),  # 0
    conv(64, 3, 2),  # 1 P1/2
    conv(64, 3),  # 2
    conv(128, 3, 2),  # 3 P2/4
    elan(256, 64, 64, 4, (-1, -3, -5, -6)),  # 4
    node("mp", filters=128),  # 5 P3/8
    elan(512, 128, 128, 4, (-1, -3, -5, -6)),  # 6
    node("mp", filters=256),  # 7 P4/16
    elan(1024, 256, 256, 4, (-1, -3, -5, -6)),  # 8
    node("mp", filters=512),  # 9 P5/32
    elan(1024, 256, 256, 4, (-1, -3, -5, -6)),  # 10
    node("sppcspc", filters=512),  # 11
    *_up(256, 8),  # 12-15
    elan(256, 256, 128, 4, neck_taps(4)),  # 16
    *_up(128, 6),  # 17-20
    elan(128, 128, 64, 4, neck_taps(4)),  # 21 P3 out
    node("mp", [-1, 16], filters=128),  # 22
    elan(256, 256, 128, 4, neck_taps(4)),  # 23 P4 out
    node("mp", [-1, 11], filters=256),  # 24
    elan(512, 512, 256, 4, neck_taps(4)),  # 25 P5 out
    node("repconv", 21, filters=256),  # 26
    node("repconv", 23, filters=512),  # 27
    node("repconv", 25, filters=1024),  # 28
]

X_TAPS = (-1, -3, -5, -7, -8)
YOLOV7X_LAYERS = [
    conv(40, 3),  # 0
    conv(80, 3, 2),  # 1 P1/2
    conv(80, 3),  # 2
    conv(160, 3, 2),  # 3 P2/4
    elan(320, 64, 64, 6, X_TAPS),  # 4
    node("mp", filters=160),  # 5 P3/8
    elan(640, 128, 128, 6, X_TAPS),  # 6
    node("mp", filters=320),  # 7 P4/16
    elan(1280, 256, 256, 6, X_TAPS),  # 8
    node("mp", filters=640),  # 9 P5/32
    elan(1280, 256, 256, 6, X_TAPS),  # 10
    node("sppcspc", filters=640),  # 11
    *_up(320, 8),  # 12-15
    elan(320, 256, 256, 6, X_TAPS),  # 16
    *_up(160, 6),  # 17-20
    elan(160, 128, 128, 6, X_TAPS),  # 21 P3 out
    node("mp", [-1, 16], filters=160),  # 22
    elan(320, 256, 256, 6, X_TAPS),  # 23 P4 out
    node("mp", [-1, 11], filters=320),  # 24
    elan(640, 512, 512, 6, X_TAPS),  # 25 P5 out
    conv(320, 3, source=21),  # 26
    conv(640, 3, source=23),  # 27
    conv(1280, 3, source=25),  # 28
]

W6_TAPS = (-1, -3, -5, -6)
YOLOV7_W6_LAYERS = [
    node("reorg"),  # 0
    conv(64, 3),  # 1 P1/2
    conv(128, 3, 2),  # 2 P2/4
    elan(128, 64, 64, 4, W6_TAPS),  # 3
    conv(256, 3, 2),  # 4 P3/8
    elan(256, 128, 128, 4, W6_TAPS),  # 5
    conv(512, 3, 2),  # 6 P4/16
    elan(512, 256, 256, 4, W6_TAPS),  # 7
    conv(768, 3, 2),  # 8 P5/32
    elan(768, 384, 384, 4, W6_TAPS),  # 9
    conv(1024, 3, 2),  # 10 P6/64
    elan(1024, 512, 512, 4, W6_TAPS),  # 11
    node("sppcspc", filters=512),  # 12
    *_up(384, 9),  # 13-16
    elan(384, 384, 192, 4, neck_taps(4)),  # 17
    *_up(256, 7),  # 18-21
    elan(256, 256, 128, 4, neck_taps(4)),  # 22
    *_up(128, 5),  # 23-26
    elan(128, 128, 64, 4, neck_taps(4)),  # 27 P3 out
    conv(256, 3, 2),  # 28
    node("concat", [-1, 22]),  # 29
    elan(256, 256, 128, 4, neck_taps(4)),  # 30 P4 out
    conv(384, 3, 2),  # 31
    node("concat", [-1, 17]),  # 32
    elan(384, 384, 192, 4, neck_taps(4)),  # 33 P5 out
    conv(512, 3, 2),  # 34
    node("concat", [-1, 12]),  # 35
    elan(512, 512, 256, 4, neck_taps(4)),  # 36 P6 out
    conv(256, 3, source=27),  # 37
    conv(512, 3, source=30),  # 38
    conv(768, 3, source=33),  # 39
    conv(1024, 3, source=36),  # 40
    conv(320, 3, source=27),  # 41 auxiliary
    conv(640, 3, source=22),  # 42
    conv(960, 3, source=17),  # 43
    conv(1280, 3, source=12),  # 44
]


def _e6_family(stem, widths, depth, block="elan"):
    """yolov7-e6, -d6 and -e6e share one layout; they differ in widths, ELAN depth and block."""
    taps = [-1] + list(range(-3, -(depth + 2), -2)) + [-(depth + 2)]
    b1, b2, b3, b4, b5 = widths
    layers = [
        node("reorg"),  # 0
        conv(stem, 3),  # 1 P1/2
        node("downc", filters=b1),  # 2 P2/4
        elan(b1, 64, 64, depth, taps, block=block),  # 3
        node("downc", filters=b2),  # 4 P3/8
        elan(b2, 128, 128, depth, taps, block=block),  # 5
        node("downc", filters=b3),  # 6 P4/16
        elan(b3, 256, 256, depth, taps, block=block),  # 7
        node("downc", filters=b4),  # 8 P5/32
        elan(b4, 384, 384, depth, taps, block=block),  # 9
        node("downc", filters=b5),  # 10 P6/64
        elan(b5, 512, 512, depth, taps, block=block),  # 11
        node("sppcspc", filters=b5 // 2),  # 12
        *_up(b4 // 2, 9),  # 13-16
        elan(b4 // 2, 384, 192, depth, neck_taps(depth), block=block),  # 17
        *_up(b3 // 2, 7),  # 18-21
        elan(b3 // 2, 256, 128, depth, neck_taps(depth), block=block),  # 22
        *_up(b2 // 2, 5),  # 23-26
        elan(b2 // 2, 128, 64, depth, neck_taps(depth), block=block),  # 27 P3 out
        node("downc", filters=b2),  # 28
        node("concat", [-1, 22]),  # 29
        elan(b3 // 2, 256, 128, depth, neck_taps(depth), block=block),  # 30 P4 out
        node("downc", filters=b4 // 2),  # 31
        node("concat", [-1, 17]),  # 32
        elan(b4 // 2, 384, 192, depth, neck_taps(depth), block=block),  # 33 P5 out
        node("downc", filters=b5 // 2),  # 34
        node("concat", [-1, 12]),  # 35
        elan(b5 // 2, 512, 256, depth, neck_taps(depth), block=block),  # 36 P6 out
        conv(b2, 3, source=27),  # 37
        conv(b3, 3, source=30),  # 38
        conv(b4, 3, source=33),  # 39
        conv(b5, 3, source=36),  # 40
    ]
    aux_sources = (
        [["second_branch", 27], ["second_branch", 22], ["second_branch", 17], 12]
        if block == "eelan"
        else [27, 22, 17, 12]
    )
    layers += [conv(w, 3, source=s) for w, s in zip((b2, b3, b4, b5), aux_sources)]  # 41-44
    return layers


P6_LEAD, P6_AUX = [37, 38, 39, 40], [41, 42, 43, 44]

ARCHITECTURES = {
    "yolov7_tiny": {
        "activation": "leaky_relu",
        "anchors": TINY_ANCHORS,
        "strides": (8, 16, 32),
        "layers": YOLOV7_TINY_LAYERS,
        "lead": [26, 27, 28],
        "input_size": 640,
        "family": "tiny",
    },
    "yolov7": {
        "activation": "silu",
        "anchors": P5_ANCHORS,
        "strides": (8, 16, 32),
        "layers": YOLOV7_LAYERS,
        "lead": [26, 27, 28],
        "input_size": 640,
        "family": "p5",
    },
    "yolov7x": {
        "activation": "silu",
        "anchors": P5_ANCHORS,
        "strides": (8, 16, 32),
        "layers": YOLOV7X_LAYERS,
        "lead": [26, 27, 28],
        "input_size": 640,
        "family": "p5",
    },
    "yolov7_w6": {
        "activation": "silu",
        "anchors": P6_ANCHORS,
        "strides": (8, 16, 32, 64),
        "layers": YOLOV7_W6_LAYERS,
        "lead": P6_LEAD,
        "aux": P6_AUX,
        "input_size": 1280,
        "family": "p6",
    },
    "yolov7_e6": {
        "activation": "silu",
        "anchors": P6_ANCHORS,
        "strides": (8, 16, 32, 64),
        "layers": _e6_family(80, (160, 320, 640, 960, 1280), depth=6),
        "lead": P6_LEAD,
        "aux": P6_AUX,
        "input_size": 1280,
        "family": "p6",
    },
    "yolov7_d6": {
        "activation": "silu",
        "anchors": P6_ANCHORS,
        "strides": (8, 16, 32, 64),
        "layers": _e6_family(96, (192, 384, 768, 1152, 1536), depth=8),
        "lead": P6_LEAD,
        "aux": P6_AUX,
        "input_size": 1280,
        "family": "p6",
    },
    "yolov7_e6e": {
        "activation": "silu",
        "anchors": P6_ANCHORS,
        "strides": (8, 16, 32, 64),
        "layers": _e6_family(80, (160, 320, 640, 960, 1280), depth=6, block="eelan"),
        "lead": P6_LEAD,
        "aux": P6_AUX,
        "input_size": 1280,
        "family": "p6",
    },
}


def family_of(architecture):
    """The hyperparameter family of an architecture dict: its "family", else "p6" for four
    output levels and "p5" otherwise."""
    if "family" in architecture:
        return architecture["family"]
    return "p6" if len(architecture["strides"]) == 4 else "p5"
