"""folder:PATH datasets: every odd image kind converted correctly, or refused naming the file."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltykit.data import load_dataset
from noveltykit.data.folder import load_folder, load_image


pytestmark = pytest.mark.usefixtures("isolated_data_env")


def save(path: Path, im: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


# --- single images: 32x32 files so the resize is a no-op and pixels can be checked exactly ----------

def test_grey_and_one_bit(tmp_path):
    grey = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 256
    out = load_image(save(tmp_path / "g.png", Image.fromarray(grey.astype(np.uint8))))
    assert out.shape == (1, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], grey)
    bits = np.zeros((32, 32), bool)
    bits[:, 16:] = True
    out = load_image(save(tmp_path / "b.png", Image.fromarray(bits)))
    assert Image.open(tmp_path / "b.png").mode == "1"
    assert out.shape == (1, 32, 32) and set(np.unique(out)) == {0, 255} and out[0, 0, 20] == 255


def test_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = load_image(save(tmp_path / "c.png", Image.fromarray(rgb)))
    np.testing.assert_array_equal(out, rgb.transpose(2, 0, 1))


def test_16_bit_uses_the_full_range(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.shape == (1, 32, 32)
    assert out.min() == 0 and out.max() == 255  # 0..65535 -> 0..255, nothing clipped at 255 early
    np.testing.assert_array_equal(out[0], np.round(values / 257.0).astype(np.uint8))
    assert len(np.unique(out)) > 200  # gradations survive (clipping would leave few levels)


def test_32_bit_int_outside_16_bit_range_is_stretched(tmp_path):
    values = (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) - 500) * 1000
    out = load_image(save(tmp_path / "i32.tif", Image.fromarray(values, mode="I")))
    assert out.min() == 0 and out.max() == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (32, 32), (255, 0, 0, 0)), quality=95)  # pure cyan
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.shape == (3, 32, 32)
    assert np.abs(out[:, 16, 16].astype(int) - [0, 255, 255]).max() <= 8


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere
    rgba[:, :10, 3] = 0  # transparent
    rgba[:, 10:20, 3] = 128  # half
    rgba[:, 20:, 3] = 255  # opaque
    out = load_image(save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    assert out.shape == (3, 32, 32)
    assert out[:, 0, 0].tolist() == [255, 255, 255]
    assert out[:, 0, 15].tolist() == [255, 127, 127]
    assert out[:, 0, 25].tolist() == [255, 0, 0]
    la = np.zeros((32, 32, 2), np.uint8)
    la[:, 16:, 1] = 255  # left transparent, right opaque black
    out = load_image(save(tmp_path / "la.png", Image.fromarray(la, "LA")))
    assert out.shape == (1, 32, 32) and out[0, 0, 0] == 255 and out[0, 0, 20] == 0


def test_palette_images(tmp_path):
    grey = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))).convert("P")
    path = save(tmp_path / "pg.png", grey)
    assert Image.open(path).mode == "P"
    out = load_image(path)
    assert out.shape == (1, 32, 32) and out[0, 0, 1] == 8
    colour = Image.new("RGB", (32, 32), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    out = load_image(save(tmp_path / "pc.png", colour))
    assert out.shape == (3, 32, 32) and out[:, 0, 0].tolist() == [10, 200, 30]
    transparent = Image.new("P", (32, 32), 0)
    transparent.putpalette([255, 0, 0] * 256)
    out = load_image(save(tmp_path / "pt.png", transparent, transparency=0))
    assert out[:, 0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((32, 32), np.uint8)
    pixels[:, 16:] = 255  # left black, right white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(save(tmp_path / "rot.png", Image.fromarray(pixels), exif=exif))
    assert out[0, 0, :].max() == 0 and out[0, -1, :].min() == 255  # now top black, bottom white


def test_resize_of_odd_sizes(tmp_path):
    out = load_image(save(tmp_path / "wide.png", Image.new("RGB", (300, 17), (1, 2, 3))))
    assert out.shape == (3, 32, 32) and out[:, 5, 5].tolist() == [1, 2, 3]


# --- refusals -------------------------------------------------------------------------------------

def test_truncated_image_refused(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for ext in ("png", "jpg"):
        full = save(tmp_path / f"full.{ext}", Image.fromarray(rgb))
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(ValueError, match=f"cut.{ext}.*truncated"):
            load_image(cut)


def test_non_image_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(ValueError, match="notes.png: not an image"):
        load_image(path)


def test_huge_image_refused_by_configurable_limit(tmp_path):
    path = save(tmp_path / "big.png", Image.new("L", (100, 50)))
    assert load_image(path, max_pixels=5000).shape == (1, 32, 32)
    with pytest.raises(ValueError, match=r"big.png: 100x50 = 5,000 pixels is over the limit of 4,999"):
        load_image(path, max_pixels=4999)


def test_pillow_decompression_bomb_becomes_value_error(tmp_path, monkeypatch):
    path = save(tmp_path / "bomb.png", Image.new("L", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own hard limit is 2x this
    with pytest.raises(ValueError, match="bomb.png: image too large"):
        load_image(path)


# --- whole folders --------------------------------------------------------------------------------

def make_folder(root: Path, colour_in_train: bool = True) -> Path:
    save(root / "train" / "a.png", Image.new("L", (28, 28), 100))
    save(root / "train" / "sub" / "deeper" / "b.png", Image.new("L", (40, 40), 50))
    if colour_in_train:
        save(root / "train" / "c.jpg", Image.new("RGB", (32, 32), (200, 10, 10)), quality=95)
    (root / "train" / ".DS_Store").write_bytes(b"\x00junk")  # dot-files are ignored
    save(root / "test" / "normal" / "n1.png", Image.new("L", (32, 32), 90))
    save(root / "test" / "novel" / "x1.png", Image.new("L", (32, 32), 250))
    save(root / "test" / "novel" / "x2.png", Image.new("L", (32, 32), 0))
    return root


def test_folder_dataset_mixed_grey_and_colour(tmp_path):
    root = make_folder(tmp_path / "parts")
    ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.name == "folder:parts" and ds.class_names == ["normal", "novel"]
    assert ds.train_x.shape == (3, 3, 32, 32) and ds.train_x.dtype == np.uint8
    assert ds.train_y.tolist() == [0, 0, 0] and ds.train_groups is None  # a.png is not in a subfolder
    assert ds.test_x.shape == (3, 3, 32, 32) and ds.test_y.tolist() == [0, 1, 1]
    assert ds.info["train_files"] == ["train/a.png", "train/c.jpg", "train/sub/deeper/b.png"]
    assert ds.info["test_files"] == ["test/normal/n1.png", "test/novel/x1.png", "test/novel/x2.png"]
    assert (ds.train_x[0] == 100).all()  # grey repeated to 3 channels
    assert (ds.train_x[2] == 50).all()
    assert np.abs(ds.train_x[1, :, 16, 16].astype(int) - [200, 10, 10]).max() <= 6
    assert (ds.test_x[1] == 250).all()


def test_folder_dataset_all_grey_stays_one_channel(tmp_path):
    ds = load_folder(make_folder(tmp_path / "g", colour_in_train=False))
    assert ds.train_x.shape == (2, 1, 32, 32) and ds.channels == 1


def test_bad_file_in_folder_names_it(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "test" / "novel" / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="readme.txt"):
        load_folder(root)


@pytest.mark.parametrize("remove, message", [
    ("test/novel", "test/novel is missing"),
    ("train", "train is missing"),
])
def test_missing_folder_explains_layout(tmp_path, remove, message):
    import shutil
    root = make_folder(tmp_path / "m")
    shutil.rmtree(root / remove)
    with pytest.raises(ValueError, match=message) as err:
        load_folder(root)
    assert "expected layout" in str(err.value) and "PATH/test/normal" in str(err.value)


def test_empty_folder_explains_layout(tmp_path):
    root = make_folder(tmp_path / "e")
    for p in (root / "test" / "normal").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match=r"test/normal is empty.*\n.*expected layout"):
        load_folder(root)
    with pytest.raises(ValueError, match="does not exist"):
        load_folder(tmp_path / "nowhere")


# --- MVTec AD's layout ----------------------------------------------------------------------------

def grey(value: int, size=(20, 20)) -> Image.Image:
    return Image.new("L", size, value)


def block_mask(rows: slice, cols: slice, on: int = 255) -> Image.Image:
    values = np.zeros((20, 20), np.uint8)
    values[rows, cols] = on
    return Image.fromarray(values)


def make_mvtec(root: Path) -> Path:
    """20x20 grey images, each of its own grey level: train/good/ 3, test/good/ 2, test/crack/ 2
    with masks (000 marks rows and columns 0-3 as 0/255, 001 rows and columns 10-19 as 0/1),
    test/scratch/ 1 with no ground_truth folder."""
    for i in range(3):
        save(root / "train" / "good" / f"{i:03}.png", grey(10 + i))
    for i in range(2):
        save(root / "test" / "good" / f"{i:03}.png", grey(50 + i))
    save(root / "test" / "crack" / "000.png", grey(200))
    save(root / "test" / "crack" / "001.png", grey(201))
    save(root / "test" / "scratch" / "000.png", grey(240))
    save(root / "ground_truth" / "crack" / "000_mask.png", block_mask(slice(0, 4), slice(0, 4)))
    save(root / "ground_truth" / "crack" / "001_mask.png", block_mask(slice(10, 20), slice(10, 20), on=1))
    return root


def test_mvtec_layout_kinds_labels_and_masks(tmp_path):
    ds = load_dataset(f"folder:{make_mvtec(tmp_path / 'bottle')}", size=10, progress=False)
    assert ds.class_names == ["normal", "novel"] and ds.train_x.shape == (3, 1, 10, 10)
    assert ds.train_groups is None  # train/good/ alone is no set of classes
    assert ds.info["test_files"] == ["test/good/000.png", "test/good/001.png", "test/crack/000.png",
                                     "test/crack/001.png", "test/scratch/000.png"]
    assert ds.test_kinds.tolist() == ["good", "good", "crack", "crack", "scratch"]
    assert ds.test_y.tolist() == [0, 0, 1, 1, 1]
    assert ds.test_x[:, 0, 0, 0].tolist() == [50, 51, 200, 201, 240]
    assert ds.info["defect_kinds"] == ["crack", "scratch"] and ds.info["unmasked_kinds"] == ["scratch"]
    # 20 -> 10 by nearest neighbour keeps every other pixel: rows 0-3 -> 0-1, rows 10-19 -> 5-9
    expected = np.zeros((5, 10, 10), np.uint8)
    expected[2, :2, :2] = 1
    expected[3, 5:, 5:] = 1
    assert ds.test_masks.dtype == np.uint8 and ds.test_masks.shape == (5, 10, 10)
    np.testing.assert_array_equal(ds.test_masks, expected)
    assert ds.test_has_mask.tolist() == [True, True, True, True, False]
    assert ds.info["masks_emptied_by_resize"] == []
    np.testing.assert_array_equal(ds.pixel_masks(np.array([0, 3])), expected[[0, 3]])
    with pytest.raises(ValueError, match="test images of kind scratch have no ground-truth masks"):
        ds.pixel_masks()
    # one-vs-rest on the normal class: every defect kind is novel
    from noveltykit.data.protocols import make_split
    assert make_split(ds, "one-vs-rest", "normal").test_is_novel.tolist() == [False, False, True, True, True]


def test_mvtec_masks_resized_up_stay_binary(tmp_path):
    ds = load_folder(make_mvtec(tmp_path / "m"), size=40)
    assert set(np.unique(ds.test_masks)) == {0, 1}
    assert ds.test_masks[2].sum() == 8 * 8 and ds.test_masks[2, :8, :8].all()  # 4x4 of 20 -> 8x8 of 40
    assert ds.test_masks[3].sum() == 20 * 20 and not ds.test_masks[[0, 1, 4]].any()


def test_a_defect_thinner_than_the_resize_step_is_listed(tmp_path):
    root = make_mvtec(tmp_path / "m")
    save(root / "ground_truth" / "crack" / "001_mask.png", block_mask(slice(0, 20), slice(0, 1)))  # column 0
    ds = load_folder(root, size=10)  # keeps columns 1, 3, ..., 19
    assert not ds.test_masks[3].any() and ds.info["masks_emptied_by_resize"] == ["ground_truth/crack/001_mask.png"]


def test_mvtec_without_ground_truth_has_no_masks(tmp_path):
    import shutil
    root = make_mvtec(tmp_path / "m")
    shutil.rmtree(root / "ground_truth")
    ds = load_folder(root, size=10)
    assert ds.test_masks is None and ds.test_has_mask is None and ds.test_kinds.tolist()[0] == "good"
    with pytest.raises(ValueError, match="no ground-truth masks, so no pixel metrics"):
        ds.pixel_masks()


def test_first_layout_has_no_masks(tmp_path):
    ds = load_folder(make_folder(tmp_path / "f"))
    assert ds.test_masks is None and ds.test_has_mask is None and ds.test_kinds is None
    assert "layout" not in ds.info


def test_good_images_may_have_empty_masks(tmp_path):
    root = make_mvtec(tmp_path / "m")
    save(root / "ground_truth" / "good" / "000_mask.png", block_mask(slice(0, 0), slice(0, 0)))
    save(root / "ground_truth" / "good" / "001_mask.png", block_mask(slice(0, 0), slice(0, 0)))
    assert not load_folder(root, size=10).test_masks[:2].any()


def _bad_size(root):
    save(root / "ground_truth" / "crack" / "001_mask.png", Image.new("L", (16, 20)))


def _orphan(root):
    save(root / "ground_truth" / "crack" / "007_mask.png", block_mask(slice(0, 1), slice(0, 1)))


def _misnamed(root):
    (root / "ground_truth" / "crack" / "001_mask.png").rename(root / "ground_truth" / "crack" / "001.png")


def _missing(root):
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()


def _grey_levels(root):
    save(root / "ground_truth" / "crack" / "001_mask.png", block_mask(slice(0, 4), slice(0, 4), on=128))


def _soft_edges(root):
    values = np.zeros((20, 20), np.uint8)
    values[:4, :4], values[4, :4] = 255, 1
    save(root / "ground_truth" / "crack" / "001_mask.png", Image.fromarray(values))


def _unknown_kind(root):
    save(root / "ground_truth" / "hole" / "000_mask.png", block_mask(slice(0, 1), slice(0, 1)))


def _defect_in_good(root):
    save(root / "ground_truth" / "good" / "001_mask.png", block_mask(slice(0, 1), slice(0, 1)))
    save(root / "ground_truth" / "good" / "000_mask.png", block_mask(slice(0, 0), slice(0, 0)))


def _loose_test_file(root):
    save(root / "test" / "stray.png", grey(0))


def _no_defects(root):
    import shutil
    for kind in ("crack", "scratch"):
        shutil.rmtree(root / "test" / kind)
    shutil.rmtree(root / "ground_truth")


@pytest.mark.parametrize("break_it, message", [
    (_bad_size, r"ground_truth/crack/001_mask.png: mask is 16x20, its image \S*test/crack/001.png is 20x20"),
    (_orphan, r"ground_truth/crack/007_mask.png: a mask with no matching image \(expected \S*test/crack/007"),
    (_misnamed, r"ground_truth/crack/001.png: a mask with no matching image"),
    (_missing, r"test/crack/001.png: no mask for it \(expected \S*ground_truth/crack/001_mask.png\)"),
    (_grey_levels, r"crack/001_mask.png: mask of \S*test/crack/001.png is not binary \(values 0, 128"),
    (_soft_edges, r"crack/001_mask.png: mask of \S*test/crack/001.png is not binary \(values 0, 1, 255"),
    (_unknown_kind, r"ground_truth/hole/000_mask.png: a mask with no matching image: there is no test/hole/"),
    (_defect_in_good, r"ground_truth/good/001_mask.png: marks defect pixels in \S*test/good/001.png"),
    (_loose_test_file, r"test/stray.png is not in a folder of test/"),
    (_no_defects, r"has good/ but no defect folder"),
])
def test_mvtec_errors_name_the_files(tmp_path, break_it, message):
    root = make_mvtec(tmp_path / "m")
    break_it(root)
    with pytest.raises(ValueError, match=message):
        load_folder(root, size=10)
