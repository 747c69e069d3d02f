"""`NoveltyMemory`: a novelty is novel once (tech report §5.3). A replayed stream, the score against
a brute-force computation, persistence across a restart, habituation, the size cap, scoring files
with a memory, refusals, and the same on pretrained features."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift

from noveltykit.apply.score import score_paths
from noveltykit.detectors import NotFittedError, load, make
from noveltykit.detectors.memory import BANK_CONFIG, BANK_FILE, GrowingRows, NoveltyMemory

from conftest import make_blobs_dataset, needs_weights


SIZE = 32


def smooth_images(cls: int, n: int, seed: int) -> np.ndarray:
    """(n, 1, 32, 32) float images of class `cls`: its template (two broad bumps) plus a smooth
    random field per image and a little noise. Smooth, so a 1-2 pixel shift is a small change;
    classes differ far more than images of one class."""
    t_rng = np.random.default_rng(100 + cls)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    template = np.zeros((SIZE, SIZE))
    for _ in range(2):
        cy, cx = t_rng.uniform(8, SIZE - 8, 2)
        template += t_rng.choice([-1, 1]) * t_rng.uniform(0.5, 0.8) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 72)
    rng = np.random.default_rng(seed)
    field = np.stack([gaussian_filter(rng.normal(size=(SIZE, SIZE)), 4, mode="wrap") for _ in range(n)])
    field *= 0.15 / field.std(axis=(1, 2), keepdims=True)
    x = template[None] + field + rng.normal(0, 0.03, field.shape)
    return np.clip(x, -1, 1).astype(np.float32)[:, None]


def near_duplicates(x: np.ndarray, seed: int) -> np.ndarray:
    """Each image shifted 1 or 2 pixels (edges repeated) along one axis, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = []
    for img in x:
        s = int(rng.integers(1, 3)) * int(rng.choice([-1, 1]))
        moved = nd_shift(img, [0, s, 0] if rng.integers(2) else [0, 0, s], order=0, mode="nearest")
        out.append(np.clip(moved + rng.normal(0, 0.03, img.shape), -1, 1))
    return np.array(out, np.float32)


def far_image(i: int) -> np.ndarray:
    """A flat bright image, far from every class: a filler confirmed to make older items fade."""
    return np.full((1, 1, SIZE, SIZE), 1.0 - 0.01 * i, np.float32)


@pytest.fixture(scope="module")
def stream():
    return {"normal": smooth_images(0, 60, 1), "val": smooth_images(0, 20, 2), "test": smooth_images(0, 40, 3),
            "A": smooth_images(1, 10, 4), "B": smooth_images(2, 10, 5)}


@pytest.fixture(scope="module")
def knn1(stream):
    return make("knn", k=1).fit(stream["normal"], stream["val"])


def test_a_replayed_stream_flags_a_novelty_once(stream, knn1):
    det, A, B, test = knn1, stream["A"], stream["B"], stream["test"]
    memory = NoveltyMemory(det)
    assert det.predict(A[:5]).all() and det.predict(B).all(), "unseen classes are flagged on first sight"
    assert memory.predict(A[:5]).all()
    assert memory.confirm(A[:5]) == 5
    later = near_duplicates(A[:5], seed=9)
    assert det.predict(later).all(), "the plain detector flags them again"
    assert not memory.predict(later).any(), "near-duplicates of confirmed novelties are known now"
    assert memory.predict(B).all(), "another unseen class is still novel"
    assert memory.predict(test).mean() <= 0.1
    # normal images' nearest neighbours are normal: their scores are exactly the plain ones
    np.testing.assert_array_equal(memory.score(test), det.decision_function(test))


@pytest.mark.parametrize("params", [{"k": 1}, {"k": 3, "aggregate": "sum"}, {"k": 4, "aggregate": "max"},
                                    {"k": 5, "max_block_elems": 5000}])
def test_an_empty_bank_scores_as_the_detector_exactly(stream, params):
    det = make("knn", **params).fit(stream["normal"], stream["val"])
    x = np.concatenate([stream["test"], stream["A"], stream["B"]])
    np.testing.assert_array_equal(NoveltyMemory(det).score(x), det.decision_function(x))
    np.testing.assert_array_equal(NoveltyMemory(det).predict(x), det.predict(x))


@pytest.mark.parametrize("aggregate", ["mean", "sum", "max"])
def test_the_score_is_knn_over_normal_and_weighted_confirmed_items(stream, aggregate):
    """Brute force: the k smallest of (distances to normal images) and (distances to confirmed
    items / their weights), aggregated as the detector does."""
    det = make("knn", k=3, aggregate=aggregate).fit(stream["normal"], stream["val"])
    memory = NoveltyMemory(det, habituation=0.5)
    memory.confirm(stream["A"][:4])
    memory.confirm(stream["A"][4:6])  # the first four now weigh 0.5
    np.testing.assert_array_equal(memory.weights, [0.5] * 4 + [1.0] * 2)
    x = np.concatenate([near_duplicates(stream["A"][:6], 3), stream["test"][:5], stream["B"][:3]])
    flat = lambda a: torch.as_tensor(a).reshape(len(a), -1).double().numpy()
    q = flat(x)
    d_normal = np.linalg.norm(q[:, None] - det.memory_.double().numpy()[None], axis=2)
    d_bank = np.linalg.norm(q[:, None] - flat(stream["A"][:6])[None], axis=2) / memory.weights[None]
    best = np.sort(np.concatenate([d_normal, d_bank], 1), 1)[:, :3]
    expect = {"mean": best.mean(1), "sum": best.sum(1), "max": best[:, -1]}[aggregate]
    np.testing.assert_allclose(memory.score(x), expect, rtol=1e-5)
    assert (memory.score(x[:6]) < det.decision_function(x[:6])).all()


def test_growing_rows_grow_in_place_and_never_change_an_earlier_view():
    rows = GrowingRows(torch.zeros(0, 3))
    rows, first = rows.append(0, torch.ones(2, 3))
    rows, second = rows.append(2, torch.full((1, 3), 2.0))
    same, third = rows.append(3, torch.full((1, 3), 3.0))  # capacity 4 after doubling 2: in place
    assert same is rows and third.data_ptr() == second.data_ptr()
    # a fork: a second append after the first 3 rows (another copy of the same bank) does not write
    # into the buffer the first one filled; it copies
    forked, other = rows.append(3, torch.full((2, 3), 9.0))
    assert forked is not rows
    torch.testing.assert_close(third[3], torch.full((3,), 3.0))
    torch.testing.assert_close(other[3:], torch.full((2, 3), 9.0))
    torch.testing.assert_close(first, torch.ones(2, 3))
    assert [len(v) for v in (first, second, third, other)] == [2, 3, 4, 5]


def test_many_small_confirms_score_as_one_large_one(stream, knn1, tmp_path):
    """The bank grows in place confirm after confirm (GrowingRows); what it scores, saves and
    reloads is what one confirm of every image gives, and a copy taken before a confirm (serve's
    copy-on-write) keeps scoring the bank it had."""
    items = np.concatenate([stream["A"], stream["B"]])
    one = NoveltyMemory(knn1)
    one.confirm(items)
    many = NoveltyMemory(knn1, tmp_path / "bank")
    import copy
    before = None
    for i in range(len(items)):
        if i == 7:
            before = copy.copy(many)
        many.confirm(items[i:i + 1])
    x = np.concatenate([near_duplicates(items, 2), stream["test"][:5]])
    np.testing.assert_array_equal(many.score(x), one.score(x))
    np.testing.assert_array_equal(NoveltyMemory.open(knn1, tmp_path / "bank").score(x), one.score(x))
    partial = NoveltyMemory(knn1)
    partial.confirm(items[:7])
    np.testing.assert_array_equal(before.score(x), partial.score(x))


def test_the_bank_survives_a_restart_and_refuses_another_model(stream, knn1, tmp_path):
    bank, model = tmp_path / "bank", tmp_path / "model"
    knn1.save(model)
    memory = NoveltyMemory(knn1, bank, habituation=0.25, max_items=100)
    memory.confirm(stream["A"][:3])
    memory.confirm(stream["A"][3:5])  # persisted at once, each time
    config = json.loads((bank / BANK_CONFIG).read_text())
    assert sorted(p.name for p in bank.iterdir()) == sorted([BANK_FILE, BANK_CONFIG])
    assert config["count"] == 5 and config["n_items"] == 5 and config["habituation"] == 0.25
    assert config["model"]["train_fingerprint"] == knn1.training_["train_fingerprint"]
    x = np.concatenate([near_duplicates(stream["A"][:5], 1), stream["B"], stream["test"]])

    restarted = NoveltyMemory.open(load(model), bank)  # a new process: the model and the bank from disk
    np.testing.assert_array_equal(restarted.score(x), memory.score(x))
    np.testing.assert_array_equal(restarted.weights, memory.weights)
    assert (restarted.habituation, restarted.max_items, restarted.count) == (0.25, 100, 5)
    assert restarted.confirm(stream["A"][5:6]) == 6 and list(restarted.ids) == list(range(6))
    np.testing.assert_array_equal(NoveltyMemory.open(knn1, bank).weights, restarted.weights)
    # other k, same training images and pixels: the bank still applies
    NoveltyMemory.open(make("knn", k=3).fit(stream["normal"], stream["val"]), bank)

    other_data = make("knn", k=1).fit(stream["normal"][:50], stream["val"])
    with pytest.raises(ValueError, match="saved for a different model .*training fingerprint"):
        NoveltyMemory.open(other_data, bank)
    blobs = make_blobs_dataset(size=8)
    other_shape = make("knn", k=1).fit(blobs.train_x)
    with pytest.raises(ValueError, match="saved for a different model.*input_shape"):
        NoveltyMemory.open(other_shape, bank)
    with pytest.raises(ValueError, match="already holds a novelty memory.*open"):
        NoveltyMemory(knn1, bank)  # a new bank never overwrites a saved one
    (bank / BANK_FILE).write_bytes((bank / BANK_FILE).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="sha256"):
        NoveltyMemory.open(knn1, bank)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files"):
        NoveltyMemory.open(knn1, tmp_path / "busy")
    fresh = NoveltyMemory.open(knn1, tmp_path / "new")  # no bank yet: an empty one, saved on confirm
    assert len(fresh) == 0 and not (tmp_path / "new").exists()


def test_habituation_fades_and_drops_old_items(stream, knn1):
    later = near_duplicates(stream["A"][:5], seed=9)
    fading, keeping = NoveltyMemory(knn1, habituation=0.5), NoveltyMemory(knn1)
    for memory in (fading, keeping):
        memory.confirm(stream["A"][:5])
        assert not memory.predict(later).any()
    before = fading.score(later)
    fading.confirm(far_image(0))
    keeping.confirm(far_image(0))
    np.testing.assert_array_equal(fading.weights, [0.5] * 5 + [1.0])
    # k=1: the score is min(nearest normal, distance / weight): the confirmed ones count twice as far
    np.testing.assert_allclose(fading.score(later), np.minimum(2 * before, knn1.decision_function(later)),
                               rtol=1e-6)
    for i in range(1, 10):  # ten further confirms in all: 0.5 ** 10 < 1e-3
        fading.confirm(far_image(i))
        keeping.confirm(far_image(i))
    assert len(fading) == 10 and fading.ids.min() == 5, "the early items are gone"
    assert fading.weights.min() == 0.5 ** 9
    assert fading.predict(later).all(), "a faded novelty is novel again"
    np.testing.assert_array_equal(fading.score(later), knn1.decision_function(later))
    assert len(keeping) == 15 and (keeping.weights == 1).all() and not keeping.predict(later).any()


def test_the_size_cap_drops_the_oldest(stream, knn1):
    A = stream["A"]
    memory = NoveltyMemory(knn1, max_items=4)
    assert memory.confirm(A[:3]) == 3
    assert memory.confirm(A[3:5]) == 4 and list(memory.ids) == [1, 2, 3, 4]
    torch.testing.assert_close(memory.vectors, torch.as_tensor(A[1:5]).reshape(4, -1), rtol=0, atol=0)
    dropped, kept = near_duplicates(A[:1], 9), near_duplicates(A[4:5], 9)
    assert memory.predict(dropped).all() and not memory.predict(kept).any()
    assert memory.confirm(A[5:10]) == 4 and list(memory.ids) == [6, 7, 8, 9] and memory.count == 10


def test_score_files_with_a_memory(stream, knn1, tmp_path):
    to_uint8 = lambda x: np.rint((x + 1) * 127.5).astype(np.uint8)
    normal, novel = to_uint8(stream["normal"]), to_uint8(stream["A"][:4])
    det = make("knn", k=1).fit(normal, to_uint8(stream["val"]))
    det.save(tmp_path / "model")
    folder = tmp_path / "new"
    folder.mkdir()
    for i, img in enumerate(novel):
        Image.fromarray(img[0]).save(folder / f"{i}.png")
    NoveltyMemory(det, tmp_path / "bank").confirm(novel)
    plain = score_paths(tmp_path / "model", [folder], progress=False)
    remembered = score_paths(tmp_path / "model", [folder], progress=False, memory=tmp_path / "bank")
    assert all(r.is_novel for r in plain) and not any(r.is_novel for r in remembered)
    assert all(r.score < 1e-3 and r.threshold == det.threshold_ for r in remembered)


def test_refuses_what_it_cannot_serve(stream, knn1):
    pca = make("pca").fit(stream["normal"], stream["val"])
    with pytest.raises(ValueError, match=r"kNN detectors only \('knn' on pixels, 'feat-knn'.*not 'pca'"):
        NoveltyMemory(pca)
    with pytest.raises(NotFittedError):
        NoveltyMemory(make("knn"))
    with pytest.raises(ValueError, match="habituation must be in"):
        NoveltyMemory(knn1, habituation=1.5)
    with pytest.raises(ValueError, match="max_items"):
        NoveltyMemory(knn1, max_items=0)
    with pytest.raises(ValueError, match="images are 8x8"):
        NoveltyMemory(knn1).confirm(np.zeros((1, 1, 8, 8), np.uint8))


@needs_weights
def test_the_memory_works_on_pretrained_features(tmp_path):
    d = make_blobs_dataset(n_train=40, n_test=20, channels=3, size=32)
    train, test = d.train_x[d.train_y == 0], d.test_x[d.test_y == 0]
    A = d.test_x[d.test_y == 1][:5]
    det = make("feat-knn", size=32, k=1).fit(train[:30], train[30:])
    memory = NoveltyMemory(det, tmp_path / "bank")
    np.testing.assert_array_equal(memory.score(test), det.decision_function(test))
    assert det.predict(A).all()
    memory.confirm(A)
    bank = memory.vectors
    assert bank.dtype == torch.float64 and torch.allclose(bank.norm(dim=1), torch.ones(5, dtype=torch.float64))
    later = np.clip(A + np.random.default_rng(0).normal(0, 3, A.shape), 0, 255).astype(np.uint8)
    assert det.predict(later).all() and not memory.predict(later).any()
    np.testing.assert_array_equal(memory.score(test), det.decision_function(test))
    np.testing.assert_array_equal(NoveltyMemory.open(det, tmp_path / "bank").score(later), memory.score(later))
    saved = json.loads((tmp_path / "bank" / BANK_CONFIG).read_text())["model"]["representation"]
    assert saved["kind"] == "features" and saved["dim"] == det.feature_dim_ and saved["metric"] == "cosine"
