"""Bad data fails when the data is built, in one line naming the file (not mid-training, not at the
final evaluation); text in any encoding is readable by the byte tokenizer."""

import numpy as np
import pytest
import torch
from PIL import Image

from kanzoo.data import build_data

LATIN1 = "Le cœur a ses raisons — déjà vu, naïve façade. ".encode("cp1252") * 40


def test_byte_tokenizer_reads_the_exact_bytes_of_any_file(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes(LATIN1 + b"\r\n" + bytes(range(256)))
    dm = build_data("text", path_or_hub_name=str(f), tokenizer="byte", block_size=32, val_fraction=0.2)
    stream = torch.cat([dm.train.tokens, dm.val.tokens]).long().numpy()
    assert np.array_equal(stream, np.frombuffer(f.read_bytes(), dtype=np.uint8))
    rnd = tmp_path / "random.txt"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    dm = build_data("text", path_or_hub_name=str(rnd), tokenizer="byte", block_size=32)
    assert torch.cat([dm.train.tokens, dm.val.tokens]).long().tolist() == list(rnd.read_bytes())


def test_other_tokenizers_name_the_file_and_offset_or_take_an_encoding(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes(LATIN1)
    offset = LATIN1.index(b"\x9c")  # the first byte that is not UTF-8 ("œ" in cp1252)
    with pytest.raises(ValueError) as err:
        build_data("text", path_or_hub_name=str(f), tokenizer="char", block_size=16)
    msg = str(err.value)
    assert str(f) in msg and f"byte offset {offset}" in msg and "\n" not in msg
    dm = build_data("text", path_or_hub_name=str(f), tokenizer="char", block_size=16, encoding="cp1252")
    text = dm.info["tokenizer"].decode(dm.train.tokens[:200].tolist())
    assert text.startswith("Le cœur a ses raisons — déjà vu")
    dm = build_data("text", path_or_hub_name=str(f), tokenizer="char", block_size=16, errors="replace")
    assert "\ufffd" in dm.info["tokenizer"].chars
    with pytest.raises(ValueError, match="only tokenizer=byte"):
        build_data("text", path_or_hub_name=str(f), tokenizer="char", errors="bytes")


def test_corrupt_table_file_is_one_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"text": "ok"}\n{"text": \xff\xfe broken\n')
    with pytest.raises(ValueError, match=r"cannot read json data from .*bad\.jsonl"):
        build_data("text", path_or_hub_name=str(f))


def _class_folder(root, n=6):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_corrupt_image_in_a_class_folder_fails_at_build(tmp_path):
    root = _class_folder(tmp_path / "imgs")
    data = (root / "dog" / "3.png").read_bytes()
    (root / "dog" / "3.png").write_bytes(data[: len(data) // 2])  # a valid header, truncated pixels
    with pytest.raises(ValueError, match=r"unreadable image .*dog/3\.png"):
        build_data("image_folder", path=str(root), image_size=8)
    dm = build_data("image_folder", path=str(root), image_size=8, validate=False)  # the old, lazy way
    assert len(dm.train) + len(dm.val) == 12


def test_val_label_out_of_range_fails_at_build(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(8)]
    train = datasets.Dataset.from_dict({"image": imgs[:6], "label": [0, 1, 2, 0, 1, 2]})
    val = datasets.Dataset.from_dict({"image": imgs[6:], "label": [1, 3]})  # 3 is no train class
    train = train.cast_column("image", datasets.Image())
    val = val.cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": train, "validation": val}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"val split has 1 label\(s\) outside 0\.\.2 .*row 1, label 3"):
        build_data("hf_image", path=str(tmp_path / "saved"), image_size=8)


def _seg_folder(root, n=5):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        m = np.zeros((12, 14), np.uint8)
        m[2:8, 3:9] = 255
        Image.fromarray(m).save(root / "masks" / f"s{i}.png")
    return root


def test_segmentation_folder_validates_every_file_up_front(tmp_path):
    root = _seg_folder(tmp_path / "a")
    data = (root / "images" / "s2.png").read_bytes()
    (root / "images" / "s2.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"unreadable image file .*s2\.png"):
        build_data("segmentation_folder", root=str(root))
    root = _seg_folder(tmp_path / "b")
    for f in (root / "masks").iterdir():  # class-id masks (0/1) for multi-class mode
        Image.fromarray(np.asarray(Image.open(f)) // 255).save(f)
    m = np.zeros((12, 14), np.uint8)
    m[0, 0] = 7  # a class id a 3-class mask cannot hold
    Image.fromarray(m).save(root / "masks" / "s4.png")
    with pytest.raises(ValueError, match=r"s4\.png: unexpected mask values \[7\] for num_classes=3"):
        build_data("segmentation_folder", root=str(root), mask_mode="multiclass", num_classes=3,
                   value_map=None, mask_threshold=None, ignore_value=None, image_size=8)  # fmt: skip


def test_nan_pixels_in_an_image_file_are_refused_naming_it(tmp_path):
    import tifffile

    root = _seg_folder(tmp_path / "a")
    img = np.random.default_rng(1).random((12, 14, 3)).astype(np.float32)
    img[3, 4, 1] = np.nan
    (root / "images" / "s1.png").unlink()
    tifffile.imwrite(root / "images" / "s1.tif", img)
    with pytest.raises(ValueError, match=r"s1\.tif: 1 pixel value\(s\) are NaN or infinite"):
        build_data("segmentation_folder", root=str(root))


def test_builder_settings_are_type_and_range_checked():
    with pytest.raises(ValueError, match=r"data\.image_size must be int, got 'big'"):
        build_data("digits", image_size="big")
    with pytest.raises(ValueError, match="image_size must be an integer >= 1"):
        build_data("digits", image_size=0)
    with pytest.raises(
        ValueError, match=r"dataset 'shapes' has no option 'num_trian' \(did you mean 'num_train'\?\)"
    ):
        build_data("shapes", num_trian=3)
    with pytest.raises(ValueError, match="num_val must be an integer >= 1"):
        build_data("shapes", num_val=0)
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        build_data("pydoc", block_size=1)
