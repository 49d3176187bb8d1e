"""Dataset readers: COCO JSON, YOLO txt, Pascal VOC, format detection, and every bad-input case."""

import io
import json
import logging

import numpy as np
import pytest
from fixtures.data_factory import rotated_with_exif
from fixtures.data_factory import write_coco_dataset
from fixtures.data_factory import write_yolo_dataset
from PIL import Image
from PIL import ImageOps

from keras_yolov7.data import VOC_CLASSES
from keras_yolov7.data import read_coco
from keras_yolov7.data import read_dataset
from keras_yolov7.data import read_voc
from keras_yolov7.data import read_yolo
from keras_yolov7.data import to_category_ids

COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat "
    "baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl "
    "banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch "
    "potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave "
    "oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()


def jpeg_bytes(width=64, height=48, color=(200, 50, 50), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color if mode == "RGB" else color[0]).save(buffer, "JPEG")
    return buffer.getvalue()


def data_warnings(caplog):
    return [
        r for r in caplog.records if r.name == "keras_yolov7.data" and r.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------- real data


def test_coco_tiny_matches_the_json(shared_data):
    path = shared_data / "coco_tiny" / "annotations" / "instances_val2017.json"
    dataset = read_coco(path)
    raw = json.loads(path.read_text())
    assert "info" not in raw and "licenses" not in raw
    assert len(dataset) == 80 and dataset.num_classes == 80 and dataset.problems == {}
    assert dataset.category_ids == sorted(c["id"] for c in raw["categories"])
    assert max(dataset.category_ids) == 90  # non-contiguous ids, contiguous labels
    assert sum(len(r.labels) for r in dataset.records) == len(raw["annotations"]) == 815
    assert sum(int(r.crowd.sum()) for r in dataset.records) == 11

    by_image = {}
    for annotation in raw["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for record in dataset.records[:5]:
        annotations = by_image[record.image_id]
        expected = np.array(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in annotations
            ]
        )
        np.testing.assert_allclose(
            record.boxes, np.clip(expected, 0, [record.width, record.height] * 2), atol=1e-3
        )
        np.testing.assert_array_equal(
            to_category_ids(dataset, record.labels), [a["category_id"] for a in annotations]
        )
        np.testing.assert_array_equal(record.crowd, [bool(a["iscrowd"]) for a in annotations])
        entry = next(e for e in raw["images"] if e["id"] == record.image_id)
        assert (record.width, record.height) == (entry["width"], entry["height"])
    names = {c["id"]: c["name"] for c in raw["categories"]}
    assert [names[i] for i in dataset.category_ids] == dataset.class_names


def test_coco128_yolo_layout(shared_data, tmp_path):
    yaml_path = tmp_path / "coco128.yaml"
    yaml_path.write_text(
        f"path: {shared_data / 'coco128'}\ntrain: images/train2017\nval: images/train2017\n"
        f"names: {json.dumps({i: n.replace('_', ' ') for i, n in enumerate(COCO80)})}\n"
    )
    # The YAML lies outside the folder its `path` names: refused unless allowed.
    with pytest.raises(ValueError, match="outside the dataset root .*--allow-outside-root"):
        read_dataset(yaml_path, split="train")
    dataset = read_dataset(yaml_path, split="train", allow_outside_root=True)
    assert len(dataset) == 128 and dataset.num_classes == 80
    assert sum(len(r.labels) for r in dataset.records) == 929
    # 2 background images (no label file) are kept as negatives; 2 label files have no image.
    assert dataset.problems == {"missing label file": 2, "label file without image": 2}
    negatives = sorted(r.image_path.rsplit("/", 1)[1] for r in dataset.records if not len(r.labels))
    assert negatives == ["000000000250.jpg", "000000000508.jpg"]
    record = next(r for r in dataset.records if r.image_path.endswith("000000000009.jpg"))
    rows = np.loadtxt(
        shared_data / "coco128" / "labels" / "train2017" / "000000000009.txt", ndmin=2
    )
    w, h = record.width, record.height
    expected = np.stack(
        [
            (rows[:, 1] - rows[:, 3] / 2) * w,
            (rows[:, 2] - rows[:, 4] / 2) * h,
            (rows[:, 1] + rows[:, 3] / 2) * w,
            (rows[:, 2] + rows[:, 4] / 2) * h,
        ],
        1,
    )
    np.testing.assert_allclose(record.boxes, np.clip(expected, 0, [w, h, w, h]), atol=1e-3)
    np.testing.assert_array_equal(record.labels, rows[:, 0].astype(int))
    assert (w, h) == Image.open(record.image_path).size


def test_read_dataset_detects_coco_folder(shared_data):
    dataset = read_dataset(shared_data / "coco_tiny", split="train")
    assert len(dataset) == 80 and dataset.category_ids is not None
    assert dataset.records[0].image_path.startswith(str(shared_data / "coco_tiny" / "train2017"))


# ---------------------------------------------------------------- YOLO txt


def test_yolo_bad_rows_are_counted_once(tmp_path, caplog):
    images = {f"{name}.jpg": jpeg_bytes(100, 50) for name in ("good", "empty", "rows", "nolabel")}
    images["broken.jpg"] = jpeg_bytes(100, 50)[:300]  # truncated JPEG
    images["garbage.jpg"] = b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10
    labels = {
        "good": "0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.1 0.1\n",
        "empty": "\n",
        "rows": (
            "0 0.5 0.5 0.2\n"  # malformed: 4 values
            "x 0.5 0.5 0.2 0.2\n"  # malformed: not a number
            "0.5 0.5 0.5 0.2 0.2\n"  # malformed: class not an integer
            "7 0.5 0.5 0.2 0.2\n"  # class id out of range (5 classes)
            "-1 0.5 0.5 0.2 0.2\n"  # class id out of range
            "1 0.5 0.5 0 0.2\n"  # zero-area
            "1 0.5 0.5 -0.2 0.2\n"  # negative
            "2 nan 0.5 0.2 0.2\n"  # NaN
            "3 1.0 0.5 0.4 0.2\n"  # half outside: clipped
            "3 1.5 0.5 0.2 0.2\n"  # fully outside: dropped
            "4 0.5 0.5 0.2 0.2\n"
            "4 0.5 0.5 0.2 0.2\n"  # duplicate row
            "2 0.1 0.1 0.3 0.1 0.3 0.3\n"  # polygon -> its bounding box
        ),
        "orphan": "0 0.5 0.5 0.1 0.1\n",
    }
    caplog.set_level(logging.WARNING)
    dataset = read_yolo(write_yolo_dataset(tmp_path, images, labels), "train")
    assert dataset.problems == {
        "corrupt image": 2,
        "label file without image": 1,
        "empty label file": 1,
        "missing label file": 1,
        "malformed label row": 3,
        "duplicate label row": 1,
        "class id out of range": 2,
        "non-finite box coordinate": 1,
        "zero-area or negative box": 2,
        "box partly outside image, clipped": 1,
        "box outside image": 1,
    }
    assert len(data_warnings(caplog)) == 1  # one summary, not one line per problem
    assert "malformed label row: 3" in data_warnings(caplog)[0].getMessage()
    records = {r.image_path.rsplit("/", 1)[1]: r for r in dataset.records}
    assert sorted(records) == ["empty.jpg", "good.jpg", "nolabel.jpg", "rows.jpg"]
    np.testing.assert_allclose(
        records["good.jpg"].boxes, [[40, 15, 60, 35], [20, 10, 30, 15]], atol=1e-4
    )
    assert len(records["empty.jpg"].labels) == 0 and len(records["nolabel.jpg"].labels) == 0
    np.testing.assert_allclose(
        records["rows.jpg"].boxes, [[80, 20, 100, 30], [40, 20, 60, 30], [10, 5, 30, 15]], atol=1e-4
    )
    np.testing.assert_array_equal(records["rows.jpg"].labels, [3, 4, 2])


def test_yolo_grayscale_rgba_and_unsupported_images(tmp_path):
    gray = jpeg_bytes(40, 30, mode="L")
    rgba = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 20, 30, 128)).save(rgba, "PNG")
    tiff = io.BytesIO()
    Image.new("RGB", (40, 30)).save(tiff, "TIFF")
    images = {"gray.jpg": gray, "rgba.png": rgba.getvalue(), "scan.tif": tiff.getvalue()}
    labels = {stem: "0 0.5 0.5 0.5 0.5\n" for stem in ("gray", "rgba", "scan")}
    dataset = read_yolo(write_yolo_dataset(tmp_path, images, labels))
    assert sorted(r.image_path.rsplit("/", 1)[1] for r in dataset.records) == [
        "gray.jpg",
        "rgba.png",
    ]
    assert dataset.problems == {"unsupported image format": 1}


def test_yolo_exif_orientation_is_applied(tmp_path):
    upright = Image.new("RGB", (60, 40), (114, 114, 114))
    upright.paste((230, 30, 30), (0, 0, 20, 10))  # object in the top-left of the upright image
    stored, exif = rotated_with_exif(upright, 6)
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif)
    assert stored.size == (40, 60)
    dataset = read_yolo(
        write_yolo_dataset(
            tmp_path, {"r.jpg": buffer.getvalue()}, {"r": "0 0.1666667 0.125 0.3333333 0.25\n"}
        )
    )
    record = dataset.records[0]
    assert (record.width, record.height, record.orientation) == (60, 40, 6)
    np.testing.assert_allclose(record.boxes, [[0, 0, 20, 10]], atol=1e-3)
    assert ImageOps.exif_transpose(Image.open(record.image_path)).size == (60, 40)


def test_yolo_split_list_names_dict_and_errors(tmp_path):
    root = tmp_path / "set"
    yaml_path = write_yolo_dataset(
        root, {"a.jpg": jpeg_bytes(), "b.jpg": jpeg_bytes()}, {"a": "1 0.5 0.5 0.5 0.5\n"}
    )
    (root / "val.txt").write_text("./images/train/b.jpg\nimages/train/b.jpg\n")
    yaml_path.write_text(
        "train: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n"
    )  # no path: YAML's folder
    train, val = read_yolo(yaml_path, "train"), read_yolo(yaml_path, "val")
    assert train.class_names == ["cat", "dog"] and len(train) == 2
    assert len(val) == 1 and val.problems == {"duplicate image": 1, "missing label file": 1}
    with pytest.raises(ValueError, match="no 'test' entry"):
        read_yolo(yaml_path, "test")
    yaml_path.write_text("train: images/train\nnames: [a]\nnc: 2\n")
    with pytest.raises(ValueError, match="nc is 2 but 'names' has 1"):
        read_yolo(yaml_path)


def test_no_usable_image_is_a_clear_error(tmp_path):
    yaml_path = write_yolo_dataset(
        tmp_path, {"bad.jpg": b"not an image"}, {"bad": "0 0.5 0.5 0.1 0.1\n"}
    )
    with pytest.raises(ValueError, match=r"(?s)no usable image in .*corrupt image: 1"):
        read_yolo(yaml_path)


# ---------------------------------------------------------------- COCO JSON


def coco_entry(image_id, name, width=64, height=48):
    return {"id": image_id, "file_name": name, "width": width, "height": height}


def coco_box(annotation_id, image_id, category_id, bbox, iscrowd=0):
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "iscrowd": iscrowd,
        "area": 1.0,
    }


def test_coco_mapping_negatives_crowd_and_bad_input(tmp_path, caplog):
    images = {
        "a.jpg": jpeg_bytes(),
        "b.jpg": jpeg_bytes(),
        "neg.jpg": jpeg_bytes(),
        "bad.jpg": jpeg_bytes()[:200],
    }
    entries = [coco_entry(10, "a.jpg"), coco_entry(11, "b.jpg"), coco_entry(12, "neg.jpg"), coco_entry(10, "b.jpg"),
               coco_entry(13, "missing.jpg"), coco_entry(14, "bad.jpg")]  # fmt: skip
    annotations = [
        coco_box(1, 10, 7, [1, 2, 10, 20]),
        coco_box(2, 10, 3, [5, 5, 4, 4], iscrowd=1),
        coco_box(3, 11, 90, [0, 0, 8, 8]),
        coco_box(4, 11, 90, [60, 40, 10, 10]),  # partly outside: clipped
        coco_box(5, 11, 5, [1, 1, 8, 8]),  # unknown category
        coco_box(6, 99, 7, [1, 1, 8, 8]),  # unknown image
        coco_box(7, 11, 7, [1, 1, 0, 8]),  # zero area
        coco_box(8, 11, 7, [float("nan"), 1, 3, 8]),  # NaN
        coco_box(9, 11, 7, "oops"),  # malformed bbox
    ]
    categories = [
        {"id": 90, "name": "toothbrush"},
        {"id": 3, "name": "car"},
        {"id": 7, "name": "train"},
    ]
    caplog.set_level(logging.WARNING)
    dataset = read_coco(write_coco_dataset(tmp_path, images, entries, annotations, categories))
    assert dataset.class_names == ["car", "train", "toothbrush"] and dataset.category_ids == [
        3,
        7,
        90,
    ]
    assert dataset.problems == {
        "duplicate image id": 1,
        "annotation for unknown image id": 1,
        "unknown category id": 1,
        "malformed bbox": 1,
        "missing image": 1,
        "corrupt image": 1,
        "non-finite box coordinate": 1,
        "zero-area or negative box": 1,
        "box partly outside image, clipped": 1,
    }
    assert len(data_warnings(caplog)) == 1
    records = {r.image_id: r for r in dataset.records}
    assert sorted(records) == [10, 11, 12]
    assert records[10].image_path.endswith("a.jpg")  # the first of the duplicate ids is kept
    np.testing.assert_allclose(records[10].boxes, [[1, 2, 11, 22], [5, 5, 9, 9]])
    np.testing.assert_array_equal(records[10].labels, [1, 0])
    np.testing.assert_array_equal(records[10].crowd, [False, True])
    np.testing.assert_allclose(records[11].boxes, [[0, 0, 8, 8], [60, 40, 64, 48]])
    np.testing.assert_array_equal(to_category_ids(dataset, records[11].labels), [90, 90])
    assert len(records[12].labels) == 0  # an image without annotations stays as a negative
    with pytest.raises(ValueError, match="labels span 0..3 but the dataset has 3 classes"):
        to_category_ids(dataset, [0, 3])


def test_coco_exif_orientation_follows_the_json_size(tmp_path):
    upright = Image.new("RGB", (60, 40), (114, 114, 114))
    stored, exif = rotated_with_exif(upright, 6)
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif)
    images = {"stored.jpg": buffer.getvalue(), "rotated.jpg": buffer.getvalue()}
    # COCO tools read stored pixels: a JSON size equal to the stored size keeps them; a JSON size
    # equal only to the rotated size means the annotator saw the rotated image.
    entries = [coco_entry(1, "stored.jpg", 40, 60), coco_entry(2, "rotated.jpg", 60, 40)]
    categories = [{"id": 1, "name": "thing"}]
    dataset = read_coco(write_coco_dataset(tmp_path, images, entries, [], categories))
    records = {r.image_id: r for r in dataset.records}
    assert (records[1].width, records[1].height, records[1].orientation) == (40, 60, 1)
    assert (records[2].width, records[2].height, records[2].orientation) == (60, 40, 6)


def test_coco_missing_keys_and_image_dir(tmp_path):
    path = tmp_path / "annotations" / "instances_x.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ValueError, match=r"no \['annotations'\] key"):
        read_coco(path)
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="no image folder found"):
        read_coco(path)


# ---------------------------------------------------------------- Pascal VOC


def voc_xml(filename, objects, size=(64, 48)):
    parts = [f"<annotation><filename>{filename}</filename>"]
    if size:
        parts.append(
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        )
    for name, box, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(root, files, split_ids):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, (xml, image) in files.items():
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        if image is not None:
            (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(image)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(split_ids) + "\n")


def test_voc_reader_with_difficult_and_bad_input(tmp_path):
    files = {
        "001": (
            voc_xml("001.jpg", [("dog", (1, 1, 10, 20), 0), ("person", (5, 6, 30, 40), 1)]),
            jpeg_bytes(),
        ),
        "002": (voc_xml("002.jpg", []), jpeg_bytes()),
        "003": (
            voc_xml("003.jpg", [("cat", ("a", 1, 2, 3), 0), ("cat", (50, 40, 80, 60), 0)]),
            jpeg_bytes(),
        ),
        "004": ("<annotation><filename>", jpeg_bytes()),
        "005": (voc_xml("005.jpg", [("dog", (1, 1, 5, 5), 0)]), None),
    }
    write_voc(tmp_path, files, ["001", "002", "003", "004", "005", "006", "001"])
    dataset = read_dataset(tmp_path, split="train")
    assert dataset.class_names == list(VOC_CLASSES)
    assert dataset.problems == {
        "duplicate image id": 1,
        "missing annotation file": 1,
        "malformed annotation file": 1,
        "malformed object": 1,
        "missing image": 1,
        "annotation of a skipped image": 1,  # 005's dog, lost with its image
        "box partly outside image, clipped": 1,
    }
    records = {r.image_path.rsplit("/", 1)[1]: r for r in dataset.records}
    assert sorted(records) == ["001.jpg", "002.jpg", "003.jpg"]
    one = records["001.jpg"]
    np.testing.assert_allclose(
        one.boxes, [[0, 0, 10, 20], [4, 5, 30, 40]]
    )  # 1-based -> 0-based edges
    np.testing.assert_array_equal(
        one.labels, [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    )
    np.testing.assert_array_equal(
        one.crowd, [False, True]
    )  # difficult: kept, not a training target
    assert len(records["002.jpg"].labels) == 0
    np.testing.assert_allclose(records["003.jpg"].boxes, [[49, 39, 64, 48]])


def test_voc_custom_classes(tmp_path):
    files = {
        "a": (
            voc_xml("a.jpg", [("widget", (1, 1, 10, 10), 0), ("gadget", (2, 2, 9, 9), 0)]),
            jpeg_bytes(),
        )
    }
    write_voc(tmp_path, files, ["a"])
    assert read_voc(tmp_path, "train").class_names == ["gadget", "widget"]
    restricted = read_voc(tmp_path, "train", class_names=["widget"])
    assert restricted.problems == {"unknown class name": 1}
    np.testing.assert_array_equal(restricted.records[0].labels, [0])
    with pytest.raises(ValueError, match=r"available splits: \['train'\]"):
        read_voc(tmp_path, "val")


def test_read_dataset_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="cannot tell the dataset format"):
        read_dataset(tmp_path)
