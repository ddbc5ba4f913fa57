"""Segmentation folders (U-KAN and generic layouts), split files, mask conversion, HF datasets."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kanzoo.data import SegmentationFolder, build_data, find_pairs, to_label_map


def _square_mask(h, w, i):
    m = np.zeros((h, w), dtype=np.uint8)
    m[2 + i % 3 : 10 + i % 3, 3:12] = 255
    return m


def make_folder(root, layout="generic", n=10, suffix="_mask", class_dirs=1, sizes=None, ext=".png"):
    """Writes n random RGB images and square masks; returns {id: foreground mask (bool)}."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    truth = {}
    for i in range(n):
        h, w = sizes[i] if sizes else (20, 24)
        iid = f"case{i:02d}"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{iid}{ext}"
        )
        m = _square_mask(h, w, i)
        truth[iid] = m > 0
        if layout == "ukan":
            for c in range(class_dirs):
                d = root / "masks" / str(c)
                d.mkdir(parents=True, exist_ok=True)
                mc = np.zeros_like(m)
                mc[:, c * 6 : c * 6 + 6] = m[:, c * 6 : c * 6 + 6]
                Image.fromarray(mc if class_dirs > 1 else m).save(d / f"{iid}.png")
        else:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(m).save(root / "masks" / f"{iid}{suffix}.png")
    return truth


@pytest.mark.parametrize(
    ("layout", "suffix"), [("ukan", ""), ("generic", "_mask"), ("generic", "_segmentation")]
)
def test_layouts_pair_images_with_their_masks(tmp_path, layout, suffix):
    truth = make_folder(tmp_path, layout=layout, suffix=suffix)
    pairs, resolved, n_dirs = find_pairs(tmp_path)
    assert resolved == layout and n_dirs == 1 and [p.id for p in pairs] == sorted(truth)
    ds = SegmentationFolder(root=tmp_path, image_size=None)
    assert ds.num_classes == 2
    for i in range(len(ds)):
        item = ds[i]
        assert item["pixel_values"].shape == (3, 20, 24) and item["id"] == ds.ids[i]
        assert torch.equal(item["mask"], torch.from_numpy(truth[item["id"]].astype(np.int64)))
        assert item["orig_size"].tolist() == [20, 24]
        expected = np.asarray(Image.open(tmp_path / "images" / f"{item['id']}.png"), dtype=np.float32) / 255
        mean, std = np.array(ds.mean)[:, None, None], np.array(ds.std)[:, None, None]
        np.testing.assert_allclose(
            item["pixel_values"].numpy() * std + mean, expected.transpose(2, 0, 1), atol=1e-5
        )


def test_ukan_multiple_class_folders_make_multiclass_labels(tmp_path):
    make_folder(tmp_path, layout="ukan", class_dirs=2)
    ds = SegmentationFolder(root=tmp_path, image_size=None)
    assert ds.num_classes == 3
    m = ds[0]["mask"]
    sq = torch.from_numpy(_square_mask(20, 24, int(ds.ids[0][-2:])) > 0)
    expected = torch.zeros(20, 24, dtype=torch.long)
    expected[:, 0:6][sq[:, 0:6]] = 1
    expected[:, 6:12][sq[:, 6:12]] = 2
    assert torch.equal(m, expected)


def test_same_folder_masks_and_numbered_extra_masks_are_merged(tmp_path):
    d = tmp_path / "all"
    d.mkdir()
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    for name in ("benign (1)", "benign (2)"):
        Image.fromarray(img).save(d / f"{name}.png")
    a, b = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[0:3, 0:3], b[5:8, 5:8] = 255, 255
    Image.fromarray(a).save(d / "benign (1)_mask.png")
    Image.fromarray(b).save(d / "benign (1)_mask_1.png")
    Image.fromarray(b).save(d / "benign (2)_mask.png")
    ds = SegmentationFolder(root=tmp_path, image_dir="all", mask_dir="all", image_size=None)
    assert ds.ids == ["benign (1)", "benign (2)"]
    assert torch.equal(ds[0]["mask"], torch.from_numpy(((a > 0) | (b > 0)).astype(np.int64)))
    assert torch.equal(ds[1]["mask"], torch.from_numpy((b > 0).astype(np.int64)))


def test_image_without_mask_names_the_file(tmp_path):
    make_folder(tmp_path, n=4)
    os.remove(tmp_path / "masks" / "case02_mask.png")
    with pytest.raises(ValueError, match=r"image without mask: .*case02\.png"):
        build_data("segmentation_folder", root=tmp_path)


def test_size_mismatch_names_the_files(tmp_path):
    make_folder(tmp_path, n=4)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "masks" / "case01_mask.png")
    with pytest.raises(ValueError, match=r"size mismatch: image .*case01\.png.*case01_mask\.png"):
        build_data("segmentation_folder", root=tmp_path)


def test_unreadable_file_and_missing_paths(tmp_path):
    make_folder(tmp_path, n=4)
    (tmp_path / "images" / "case03.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"unreadable image file .*case03\.png"):
        build_data("segmentation_folder", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_data("segmentation_folder", root=tmp_path / "nowhere")
    (tmp_path / "other" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="mask folder"):
        build_data("segmentation_folder", root=tmp_path / "other")


def test_ambiguous_masks_are_rejected(tmp_path):
    make_folder(tmp_path, n=3)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "masks" / "case00_segmentation.png")
    with pytest.raises(ValueError, match="ambiguous masks .*case00"):
        build_data("segmentation_folder", root=tmp_path)


def test_split_is_sklearn_80_20_written_once_and_reused(tmp_path):
    from sklearn.model_selection import train_test_split

    truth = make_folder(tmp_path, n=15)
    dm = build_data("segmentation_folder", root=tmp_path, seed=7, image_size=16)
    split_path = tmp_path / "splits_seed7.json"
    assert dm.info["split"] == str(split_path) and split_path.is_file()
    ref_train, ref_val = train_test_split(sorted(truth), test_size=0.2, random_state=7)
    assert dm.train.ids == list(ref_train) and dm.val.ids == list(ref_val)
    assert not set(dm.train.ids) & set(dm.val.ids)
    # a later run reads the file (here edited by hand) instead of re-splitting
    data = json.loads(split_path.read_text())
    data["val"], data["train"] = data["train"][:2], data["train"][2:] + data["val"]
    split_path.write_text(json.dumps(data))
    again = build_data("segmentation_folder", root=tmp_path, seed=7, image_size=16)
    assert again.val.ids == data["val"] and again.train.ids == data["train"]
    other = build_data("segmentation_folder", root=tmp_path, seed=8, image_size=16)
    assert other.val.ids == list(train_test_split(sorted(truth), test_size=0.2, random_state=8)[1])


def test_split_with_test_fraction_and_explicit_ids(tmp_path):
    make_folder(tmp_path, n=20)
    dm = build_data("segmentation_folder", root=tmp_path, val_fraction=0.2, test_fraction=0.2, image_size=16)
    sizes = (len(dm.train), len(dm.val), len(dm.test))
    assert sizes == (12, 4, 4)
    assert len(set(dm.train.ids) | set(dm.val.ids) | set(dm.test.ids)) == 20
    assert (tmp_path / "splits_seed0_val0.2_test0.2.json").is_file()
    ds = SegmentationFolder(root=tmp_path, ids=["case05", "case01"], image_size=16)
    assert [ds[i]["id"] for i in range(2)] == ["case05", "case01"]
    with pytest.raises(ValueError, match="ids not found"):
        SegmentationFolder(root=tmp_path, ids=["case99"])
    bad = tmp_path / "bad_split.json"
    bad.write_text(json.dumps({"train": ["case00", "case99"], "val": ["case01"]}))
    with pytest.raises(ValueError, match="case99"):
        build_data("segmentation_folder", root=tmp_path, split_file=bad)


def test_read_only_root_puts_split_in_cache(tmp_path, monkeypatch):
    make_folder(tmp_path / "ro", n=6)
    monkeypatch.setenv("KANZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("ro") else True)
    dm = build_data("segmentation_folder", root=tmp_path / "ro", image_size=16)
    assert dm.info["split"].startswith(str(tmp_path / "cache"))
    assert not (tmp_path / "ro" / "splits_seed0.json").exists()
    assert build_data("segmentation_folder", root=tmp_path / "ro", image_size=16).val.ids == dm.val.ids


def test_predefined_split_folders(tmp_path):
    make_folder(tmp_path / "train", n=6)
    make_folder(tmp_path / "test", n=3)
    dm = build_data("segmentation_folder", root=tmp_path, image_size=16)
    assert len(dm.test) == 3 and len(dm.train) + len(dm.val) == 6
    assert (tmp_path / "train" / "splits_seed0.json").is_file()


def test_resize_images_bilinear_masks_nearest(tmp_path):
    make_folder(tmp_path, n=3)
    ds = SegmentationFolder(root=tmp_path, image_size=(40, 48), augment=False)
    item = ds[1]
    assert item["pixel_values"].shape == (3, 40, 48) and item["orig_size"].tolist() == [20, 24]
    # exact 2x upsampling by nearest neighbour repeats every mask pixel in a 2x2 block
    orig = ds.original_mask(1).numpy()
    np.testing.assert_array_equal(item["mask"].numpy(), np.kron(orig, np.ones((2, 2), dtype=np.int64)))
    down = SegmentationFolder(root=tmp_path, image_size=10)[1]
    assert down["mask"].shape == (10, 10) and set(down["mask"].unique().tolist()) <= {0, 1}
    img = ds.original_image(1)[None]
    ref = torch.nn.functional.interpolate(img, size=(40, 48), mode="bilinear", align_corners=False)[0]
    mean, std = torch.tensor(ds.mean).view(3, 1, 1), torch.tensor(ds.std).view(3, 1, 1)
    torch.testing.assert_close(item["pixel_values"] * std + mean, ref, atol=1e-5, rtol=0)


def test_augmentation_moves_image_and_mask_together(tmp_path):
    make_folder(tmp_path, n=2, sizes=[(16, 16), (16, 16)])
    plain = SegmentationFolder(root=tmp_path, image_size=None)
    aug = SegmentationFolder(root=tmp_path, image_size=None, augment=True)
    x0, m0 = plain[0]["pixel_values"], plain[0]["mask"]
    seen = set()
    for _ in range(30):
        item = aug[0]
        # find which of the 8 dihedral transforms was applied, using the image alone
        for k in range(4):
            for flip in (False, True):
                xi = x0.flip(-1) if flip else x0
                if torch.equal(item["pixel_values"], xi.rot90(k, (-2, -1))):
                    mi = m0.flip(-1) if flip else m0
                    assert torch.equal(item["mask"], mi.rot90(k, (-2, -1)))
                    seen.add((k, flip))
    assert len(seen) >= 3


def test_mask_value_conversion():
    assert to_label_map(np.array([[0, 1], [1, 0]])).tolist() == [[0, 1], [1, 0]]
    noisy = np.array([[0, 3], [250, 131]], dtype=np.uint8)  # JPEG-like noise around 0/255
    assert to_label_map(noisy).tolist() == [[0, 0], [1, 1]]
    assert to_label_map(noisy, threshold=0).tolist() == [[0, 1], [1, 1]]
    instances = np.array([[0, 3], [250, 131]], dtype=np.uint16)  # instance ids: every id is foreground
    assert to_label_map(instances).tolist() == [[0, 1], [1, 1]]
    assert to_label_map(np.array([[0, 2], [1, 2]]), mode="multiclass", num_classes=3).tolist() == [
        [0, 2],
        [1, 2],
    ]
    with pytest.raises(ValueError, match=r"m\.png: unexpected mask values \[7\]"):
        to_label_map(np.array([[0, 7]]), mode="multiclass", num_classes=3, name="m.png")
    gray = np.array([[0, 128], [255, 0]])
    assert to_label_map(gray, mode="multiclass", value_map={0: 0, 128: 1, 255: 2}).tolist() == [
        [0, 1],
        [2, 0],
    ]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, 0] = (0, 255, 0)
    vm = {"0,0,0": 0, "255,0,0": 1, (0, 255, 0): 2}
    assert to_label_map(rgb, mode="multiclass", value_map=vm).tolist() == [[0, 1], [2, 0]]
    rgb[1, 1] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        to_label_map(rgb, mode="multiclass", value_map=vm, name="c.png")


def test_multiclass_folder_with_value_map(tmp_path):
    make_folder(tmp_path, n=4)
    ds = SegmentationFolder(root=tmp_path, mask_mode="multiclass", value_map={0: 0, 255: 4}, image_size=None)
    assert ds.num_classes == 5 and set(ds[0]["mask"].unique().tolist()) == {0, 4}
    with pytest.raises(ValueError, match="unexpected mask values"):
        SegmentationFolder(root=tmp_path, mask_mode="multiclass", num_classes=3, image_size=None)[0]


def test_hf_segmentation_from_saved_dataset(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    imgs, masks, truth = [], [], []
    for i in range(10):
        imgs.append(Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)))
        m = _square_mask(12, 16, i)
        masks.append(Image.fromarray(m))
        truth.append(m > 0)
    feats = datasets.Features(
        {"image": datasets.Image(), "annotation": datasets.Image(), "id": datasets.Value("string")}
    )
    ds = datasets.Dataset.from_dict(
        {"image": imgs, "annotation": masks, "id": [f"s{i}" for i in range(10)]}, features=feats
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    dm = build_data(
        "hf_segmentation", path_or_hub_name=tmp_path / "hf", image_size=None, seed=1, augment=False
    )
    assert len(dm.train) == 8 and len(dm.val) == 2 and dm.info["num_classes"] == 2
    for split in (dm.train, dm.val):
        for i in range(len(split)):
            item = split[i]
            j = int(item["id"][1:])
            assert torch.equal(item["mask"], torch.from_numpy(truth[j].astype(np.int64)))
            assert item["pixel_values"].shape == (3, 12, 16)
    again = build_data("hf_segmentation", path_or_hub_name=tmp_path / "hf", seed=1)
    assert again.val.ids == dm.val.ids
    with pytest.raises(ValueError, match="mask column 'segm'"):
        build_data("hf_segmentation", path_or_hub_name=tmp_path / "hf", mask_column="segm")


def test_split_orders_ids_like_ukan_sorted_glob(tmp_path):
    """U-KAN splits ids in the order of sorted(glob('images/*.png')); 'a-1.png' sorts before 'a.png'
    although the id 'a' sorts before 'a-1'."""
    from glob import glob

    from sklearn.model_selection import train_test_split

    (tmp_path / "images").mkdir()
    (tmp_path / "masks" / "0").mkdir(parents=True)
    names = ["a", "a-1", "a-2", "b", "b-1", "c", "c-1", "d", "d-1", "e"]
    for name in names:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "0" / f"{name}.png")
    ukan_ids = [
        os.path.splitext(os.path.basename(p))[0] for p in sorted(glob(str(tmp_path / "images" / "*.png")))
    ]
    assert ukan_ids != sorted(names)
    ref_train, ref_val = train_test_split(ukan_ids, test_size=0.2, random_state=41)
    dm = build_data("segmentation_folder", root=tmp_path, seed=41, image_size=4)
    assert dm.train.ids == ref_train and dm.val.ids == ref_val


def test_datasets_pickle_for_loader_workers(tmp_path):
    import pickle

    make_folder(tmp_path, n=4)
    ds = SegmentationFolder(root=tmp_path, image_size=8, augment=True)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.ids == ds.ids and torch.equal(clone.original_mask(0), ds.original_mask(0))


def test_mask_without_image_is_ignored_with_a_warning(tmp_path):
    make_folder(tmp_path, n=3)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "masks" / "stray_mask.png")
    with pytest.warns(UserWarning, match="stray_mask.png"):
        ds = SegmentationFolder(root=tmp_path, image_size=8)
    assert ds.ids == ["case00", "case01", "case02"]
