"""Evaluation and training pictures as PNG files (matplotlib, drawn off-screen with Agg).

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so
plotting neither opens windows nor changes the user's matplotlib backend. Every picture has a
fixed size in pixels (`figsize * dpi`), stated in each function.
"""

import csv
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from keras_yolov7.visualization import class_palette

MAX_LEGEND_CLASSES = 10
MEAN_COLOR = "#1f4e9c"


def class_colors(num_classes):
    """The colour of each class (`keras_yolov7.visualization.class_palette`) as 0..1 RGB."""
    return [tuple(v / 255 for v in color) for color in class_palette(num_classes)]


def _figure(width, height, dpi):
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.savefig(path, dpi=fig.dpi, facecolor="white")


def _style_axes(ax, xlabel, ylabel, title):
    ax.set_xlabel(xlabel, fontsize=12)
    ax.set_ylabel(ylabel, fontsize=12)
    ax.set_title(title, fontsize=14, fontweight="bold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=10)


def _class_lines(ax, x, ys, names, has_gt, labels):
    """Per-class curves: coloured with a legend for a few classes, thin grey for many."""
    shown = np.flatnonzero(has_gt)
    many = len(shown) > MAX_LEGEND_CLASSES
    colors = class_colors(len(names))
    for c in shown:
        if many:
            ax.plot(x, ys[c], color="#b0b0b0", linewidth=0.7, alpha=0.6)
        else:
            ax.plot(x, ys[c], color=colors[c], linewidth=1.3, label=labels[c])
    if many:
        ax.plot([], [], color="#b0b0b0", linewidth=0.7, label=f"{len(shown)} classes")


def plot_pr_curves(curves, class_names, path, dpi=150):
    """Precision-recall curve of each class at IoU 0.5 and their mean (bold).

    Args:
        curves: the dict of `metrics.precision_recall_curves`.
        class_names: name of each class index.
        path: the PNG to write, 1350 x 900 pixels at the default dpi (9 x 6 inches).
    """
    has_gt = curves["has_gt"]
    fig = _figure(9, 6, dpi)
    ax = fig.add_subplot()
    labels = [f"{n}  {a:.3f}" for n, a in zip(class_names, np.nan_to_num(curves["ap"]))]
    _class_lines(ax, curves["recall_grid"], curves["pr_precision"], class_names, has_gt, labels)
    if has_gt.any():
        mean_ap = np.nanmean(curves["ap"][has_gt])
        ax.plot(
            curves["recall_grid"],
            curves["pr_precision"][has_gt].mean(0),
            color=MEAN_COLOR,
            linewidth=3,
            label=f"all classes  {mean_ap:.3f} mAP@0.5",
        )
    _style_axes(ax, "Recall", "Precision", "Precision-recall (IoU 0.5)")
    ax.legend(loc="lower left", fontsize=9, frameon=True, framealpha=0.9)
    fig.tight_layout()
    _save(fig, path)


def plot_metric_confidence(curves, class_names, path, metric="f1", dpi=150):
    """F1 (or precision, recall) of each class against the confidence threshold, mean bold.

    The best mean value is marked and written in the legend ("0.62 at 0.314").

    Args:
        curves: the dict of `metrics.precision_recall_curves`.
        class_names: name of each class index.
        path: the PNG to write, 1350 x 900 pixels at the default dpi (9 x 6 inches).
        metric: "f1", "precision" or "recall".
    """
    if metric not in ("f1", "precision", "recall"):
        raise ValueError(f"metric is {metric!r}; expected 'f1', 'precision' or 'recall'")
    name = {"f1": "F1", "precision": "Precision", "recall": "Recall"}[metric]
    has_gt = curves["has_gt"]
    x, ys = curves["confidence"], curves[metric]
    fig = _figure(9, 6, dpi)
    ax = fig.add_subplot()
    _class_lines(ax, x, ys, class_names, has_gt, [str(n) for n in class_names])
    if has_gt.any():
        mean = ys[has_gt].mean(0)
        best = int(np.argmax(mean))
        ax.plot(
            x,
            mean,
            color=MEAN_COLOR,
            linewidth=3,
            label=f"all classes  {mean[best]:.2f} at {x[best]:.3f}",
        )
        ax.plot([x[best]], [mean[best]], "o", color=MEAN_COLOR, markersize=8)
    _style_axes(ax, "Confidence", name, f"{name}-confidence (IoU 0.5)")
    ax.legend(loc="lower left" if metric != "recall" else "upper right", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def normalize_confusion_matrix(matrix):
    """Each column (true class, background last) divided by its total; empty columns stay 0."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(0, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_matrix_size(num_classes):
    """Figure side in inches of the confusion matrix: room for the class names."""
    return float(max(7.0, 3.0 + 0.2 * (num_classes + 1)))


def plot_confusion_matrix(matrix, class_names, path, normalize=True, dpi=150):
    """Confusion matrix heat map, predicted classes down, true classes across.

    Args:
        matrix: `(C + 1, C + 1)` counts `M[predicted, true]` from `metrics.confusion_matrix`,
            index C being background (missed ground truth / detections without ground truth).
        class_names: C names.
        path: the PNG to write, square, `confusion_matrix_size(C) * dpi` pixels a side.
        normalize: show each true class's column as fractions (its total written under the
            column name) rather than counts.
    """
    counts = np.asarray(matrix)
    num = counts.shape[0]
    if counts.shape != (len(class_names) + 1,) * 2:
        raise ValueError(
            f"confusion matrix has shape {counts.shape}; expected "
            f"({len(class_names) + 1}, {len(class_names) + 1}) for {len(class_names)} classes"
        )
    values = normalize_confusion_matrix(counts) if normalize else counts.astype(np.float64)
    side = confusion_matrix_size(num - 1)
    fig = _figure(side, side, dpi)
    ax = fig.add_subplot()
    shown = np.where(values > 0, values, np.nan)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    ax.set_facecolor("white")
    font = 10 if num <= 20 else 7 if num <= 45 else 5
    names = [str(n) for n in class_names] + ["background"]
    totals = counts.sum(0)
    ax.set_xticks(
        range(num),
        [f"{n} ({t})" for n, t in zip(names, totals)] if num <= 45 else names,
        rotation=45 if num <= 12 else 90,
        ha="right" if num <= 12 else "center",
        rotation_mode="anchor" if num <= 12 else "default",
        fontsize=font,
    )
    ax.set_yticks(range(num), names, fontsize=font)
    ax.set_xlabel("True", fontsize=12)
    ax.set_ylabel("Predicted", fontsize=12)
    ax.set_title(
        "Confusion matrix" + (" (fraction of each true class)" if normalize else " (counts)"),
        fontsize=14,
        fontweight="bold",
    )
    ax.set_xticks(np.arange(-0.5, num, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, num, 1), minor=True)
    ax.grid(which="minor", color="#eeeeee", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    if num <= 30:
        top = np.nanmax(shown) if np.isfinite(shown).any() else 1
        for (p, t), v in np.ndenumerate(values):
            if v >= 0.005 or (not normalize and v > 0):
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                color = "white" if v > 0.6 * top else "#222222"
                ax.text(t, p, text, ha="center", va="center", fontsize=font - 1, color=color)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, shrink=0.8)
    colorbar.ax.tick_params(labelsize=9)
    fig.tight_layout()
    _save(fig, path)


def _draw_boxes(ax, boxes, labels, scores, class_names, colors, image_size):
    height, width = image_size
    for i in range(len(labels)):
        x1, y1, x2, y2 = boxes[i]
        c = int(labels[i])
        color = colors[c % len(colors)]
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.6)
        )
        name = str(class_names[c]) if c < len(class_names) else str(c)
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        # Labels sit above the box; near the top or right edge they move inside it.
        right = x1 > 0.6 * width
        ax.text(
            x2 if right else x1,
            y1,
            text,
            fontsize=6.5,
            color="white",
            va="top" if y1 < 0.06 * height else "bottom",
            ha="right" if right else "left",
            bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0, "alpha": 0.85},
            clip_on=True,
        )


def predictions_grid(num_images):
    """(rows, image columns) of the predictions picture; each image takes two panels."""
    columns = max(1, math.ceil(math.sqrt(num_images / 2)))
    return math.ceil(num_images / columns), columns


def plot_predictions(
    images,
    targets,
    predictions,
    class_names,
    path,
    confidence_threshold=0.25,
    max_images=16,
    panel_inches=3.0,
    dpi=100,
):
    """A grid of images, each with its labels beside its predictions.

    Args:
        images: `(batch, height, width, 3)` RGB 0..255.
        targets: `{"boxes": (batch, M, 4) xyxy pixels of the images, "labels": (batch, M)}`,
            padded with -1.
        predictions: `{"boxes": (batch, D, 4) xyxy pixels, "confidence": (batch, D),
            "labels": (batch, D)}` padded with -1 (the output of `postprocess`).
        class_names: name of each class index.
        path: the PNG to write, `(2 * columns * panel_inches * dpi)` x
            `(rows * panel_inches * dpi)` pixels with `predictions_grid(n)` rows and columns.
        confidence_threshold: predictions below it are not drawn.
        max_images: at most this many images of the batch.
    """
    images = np.asarray(images)[:max_images]
    n = len(images)
    rows, columns = predictions_grid(n)
    fig = _figure(2 * columns * panel_inches, rows * panel_inches, dpi)
    colors = class_colors(max(len(class_names), 1))
    gt_boxes = np.asarray(targets["boxes"])
    gt_labels = np.asarray(targets["labels"])
    pred_boxes = np.asarray(predictions["boxes"])
    pred_scores = np.asarray(predictions["confidence"])
    pred_labels = np.asarray(predictions["labels"])
    for i in range(rows * columns):
        row, col = divmod(i, columns)
        for side in range(2):
            ax = fig.add_subplot(rows, 2 * columns, row * 2 * columns + 2 * col + side + 1)
            ax.axis("off")
            if i >= n:
                continue
            ax.imshow(images[i].astype(np.uint8))
            if side == 0:
                real = gt_labels[i] >= 0
                _draw_boxes(
                    ax,
                    gt_boxes[i][real],
                    gt_labels[i][real],
                    None,
                    class_names,
                    colors,
                    images[i].shape[:2],
                )
                ax.set_title(f"image {i}: labels ({int(real.sum())})", fontsize=8)
            else:
                shown = (pred_labels[i] >= 0) & (pred_scores[i] >= confidence_threshold)
                _draw_boxes(
                    ax,
                    pred_boxes[i][shown],
                    pred_labels[i][shown],
                    pred_scores[i][shown],
                    class_names,
                    colors,
                    images[i].shape[:2],
                )
                ax.set_title(f"predictions ({int(shown.sum())})", fontsize=8)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.97, wspace=0.02, hspace=0.1)
    _save(fig, path)


def read_results_csv(csv_path):
    """Columns of a training log CSV (`epoch` plus losses and metrics) as float arrays.

    Empty cells and non-numbers ("NA", written by CSVLogger for epochs without a metric)
    become NaN.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} has no rows; expected a header and one row per epoch")

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {k.strip(): np.array([number(r[k]) for r in rows]) for k in rows[0]}


def results_grid(num_columns):
    """(rows, columns) of the panels of `plot_results`."""
    columns = min(5, max(1, num_columns))
    return math.ceil(num_columns / columns), columns


def plot_results(csv_path, path, panel_inches=(3.6, 2.8), dpi=120):
    """Training curves from a results CSV, one panel per column (losses, metrics, rates).

    Args:
        csv_path: CSV with an `epoch` column (0-based as Keras' CSVLogger writes it) and any
            others; epochs without a value (NaN / "NA") are skipped in that panel.
        path: the PNG to write, `(columns * 3.6 * dpi)` x `(rows * 2.8 * dpi)` pixels with
            `results_grid(number of plotted columns)` rows and columns.
    """
    table = read_results_csv(csv_path)
    if "epoch" not in table:
        raise ValueError(f"{csv_path} has columns {sorted(table)}; expected an 'epoch' column")
    epochs = table.pop("epoch") + 1
    names = [k for k in table if np.isfinite(table[k]).any()]
    if not names:
        raise ValueError(f"{csv_path} has no numeric column besides epoch")
    rows, columns = results_grid(len(names))
    fig = _figure(columns * panel_inches[0], rows * panel_inches[1], dpi)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, i + 1)
        y = table[name]
        ok = np.isfinite(y)
        is_loss = "loss" in name
        color = "#c0392b" if is_loss else MEAN_COLOR
        ax.plot(
            epochs[ok], y[ok], marker="o", markersize=3, linewidth=1.5, color=color, label="value"
        )
        if ok.sum() >= 5:
            ax.plot(
                epochs[ok],
                _smooth(y[ok]),
                linestyle="--",
                linewidth=1.2,
                color="#555555",
                label="smoothed",
            )
        ax.set_title(name, fontsize=11, fontweight="bold", loc="left")
        ax.set_title(_headline(name, y[ok]), fontsize=8, color="#555555", loc="right")
        ax.set_xlabel("epoch", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    _save(fig, path)


METRIC_WORDS = ("map", "precision", "recall", "f1", "accuracy", "ar1", "ar10", "ar100", "ar_")


def _headline(name, values):
    """The number worth reading off a panel: min of a loss, max of a metric, else the last."""
    if not len(values):
        return ""
    lowered = name.lower()
    if "loss" in lowered:
        return f"min {values.min():.4g}"
    if any(word in lowered for word in METRIC_WORDS):
        return f"max {values.max():.4g}"
    return f"last {values[-1]:.4g}"


def _smooth(y, fraction=0.1):
    """Moving average over about `fraction` of the points (edges padded by reflection)."""
    window = max(3, round(len(y) * fraction) | 1)
    pad = window // 2
    padded = np.pad(y, pad, mode="reflect")
    return np.convolve(padded, np.ones(window) / window, mode="valid")
