"""Printed summaries: the COCO table and the per-class table of an evaluation."""


def print_evaluation(result, class_names):
    """Prints COCO's 12-line summary, the per-class table (labels, P, R, AP50, AP) and a line on
    the annotations and images the dataset reader left out (not scored), if any.

    Args:
        result: the dict of `keras_yolov7.evaluation.evaluate_detections`.
        class_names: name of each class index.
    """
    from keras_yolov7.evaluation.coco import format_coco_table
    from keras_yolov7.evaluation.coco import format_not_scored
    from keras_yolov7.evaluation.coco import format_per_class_table

    print(format_coco_table(result))
    print(format_per_class_table(result, class_names))
    if format_not_scored(result):
        print(format_not_scored(result))
