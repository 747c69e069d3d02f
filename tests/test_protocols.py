import numpy as np
import pytest

from noveltykit.data.protocols import make_split

from conftest import make_blobs_dataset


def _rows(x):
    return {im.tobytes() for im in x}


def test_one_vs_rest(blobs):
    s = make_split(blobs, "one-vs-rest", 1, seed=0, val_fraction=0.1)
    assert set(blobs.train_y[s.train_idx]) == {1} and set(blobs.train_y[s.val_idx]) == {1}
    assert not set(s.train_idx) & set(s.val_idx)
    assert sorted([*s.train_idx, *s.val_idx]) == list(np.flatnonzero(blobs.train_y == 1))
    assert len(s.val_idx) == 6  # 10% of 60
    assert len(s.test_idx) == len(blobs.test_y)  # the whole test split
    np.testing.assert_array_equal(s.test_is_novel, blobs.test_y != 1)
    train, val, test, _ = s.arrays(blobs)
    assert not _rows(test) & (_rows(train) | _rows(val))  # no test image reaches training


def test_leave_one_out(blobs):
    s = make_split(blobs, "leave-one-out", "c2", seed=3)
    assert 2 not in set(blobs.train_y[s.train_idx]) | set(blobs.train_y[s.val_idx])
    assert len(s.train_idx) + len(s.val_idx) == 120
    np.testing.assert_array_equal(s.test_is_novel, blobs.test_y == 2)


def test_split_is_seeded():
    ds = make_blobs_dataset(n_train=200)
    a, b = make_split(ds, "one-vs-rest", 0, seed=5), make_split(ds, "one-vs-rest", 0, seed=5)
    c = make_split(ds, "one-vs-rest", 0, seed=6)
    np.testing.assert_array_equal(a.val_idx, b.val_idx)
    assert not np.array_equal(a.val_idx, c.val_idx)


@pytest.mark.parametrize("kwargs, match", [
    (dict(protocol="bogus", target_class=0), "protocol"),
    (dict(protocol="one-vs-rest", target_class=7), "out of range"),
    (dict(protocol="one-vs-rest", target_class="c9"), "unknown class"),
    (dict(protocol="one-vs-rest", target_class=0, val_fraction=1.0), "val_fraction"),
])
def test_split_errors(blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_split(blobs, **kwargs)
