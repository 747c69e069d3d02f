import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve as sk_roc_curve

from noveltykit.analysis.metrics import (all_metrics, aupr, auroc, fpr_at_tpr, pixel_auroc, precision_at_n,
                                         pro_auc, pro_curve, roc_curve)


@pytest.mark.parametrize("decimals", [None, 1, 0])  # None: no ties; 1 and 0: many ties
def test_auroc_and_aupr_match_sklearn(decimals):
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.3
    scores = rng.normal(size=500) + labels * 0.8
    if decimals is not None:
        scores = np.round(scores, decimals)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert aupr(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_auroc_hand_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    # normal scores {1, 2}, novel {2, 3}: pairs (1<2, 1<3, 2=2, 2<3) -> 3.5 / 4
    assert auroc([0, 0, 1, 1], [1, 2, 2, 3]) == pytest.approx(0.875)


def test_fpr_at_95_tpr_matches_sklearn_curve():
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.5
    scores = rng.normal(size=400) + labels * 1.5
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_tpr(labels, scores, 0.95) == pytest.approx(expected)
    ours_fpr, ours_tpr, _ = roc_curve(labels, scores)
    assert ours_fpr[0] == 0 and ours_tpr[-1] == 1 and np.all(np.diff(ours_tpr) >= 0)


def test_precision_at_n():
    labels = [1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.1, 0.0]
    assert precision_at_n(labels, scores, 1) == 1.0
    assert precision_at_n(labels, scores) == 0.5  # n = number of novel = 2
    assert precision_at_n(labels, scores, 3) == pytest.approx(2 / 3)


@pytest.mark.parametrize("labels, scores, match", [
    ([0, 0, 0], [1, 2, 3], "both"),
    ([0, 1], [np.nan, 1], "NaN"),
    ([0, 1, 1], [1, 2], "length"),
])
def test_metric_errors(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        all_metrics(labels, scores)


# --- pixel metrics ----------------------------------------------------------------------------------

def two_regions():
    """One 4x4 image: region A (4 pixels, top left) found fully at 0.9, region B (2 pixels, bottom
    right) half: one pixel at 0.8, the other at 0, tied with 8 of the 10 normal pixels; two normal
    pixels at 0.7 and 0.5."""
    mask = np.array([[1, 1, 0, 0],
                     [1, 1, 0, 0],
                     [0, 0, 0, 0],
                     [0, 0, 1, 1]])
    amap = np.array([[.9, .9, 0, .7],
                     [.9, .9, 0, 0],
                     [.5, 0, 0, 0],
                     [0, 0, .8, 0]])
    return mask[None], amap[None]


def test_pro_curve_by_hand():
    # threshold 0.9: A found, B not: PRO (1 + 0) / 2 = 0.5, no false positive
    #           0.8: B half found: PRO (1 + 1/2) / 2 = 0.75, FPR 0
    #           0.7, 0.5: one normal pixel each, of 10: FPR 0.1, 0.2, PRO 0.75
    #           0: everything: FPR 1, PRO 1
    # (a pixel-weighted curve would say 4/6 at 0.9, and 5/6 from 0.8: each region counts alike)
    fpr, pro = pro_curve(*two_regions())
    np.testing.assert_allclose(fpr, [0, 0, 0, .1, .2, 1, 1])
    np.testing.assert_allclose(pro, [0, .5, .75, .75, .75, 1, 1])


@pytest.mark.parametrize("limit, expected", [
    # up to 0.2 the curve is flat at 0.75 once FPR leaves 0: 0.75 * 0.2 / 0.2
    (0.2, 0.75),
    # at 0.3, PRO between (0.2, 0.75) and (1, 1): 0.75 + 0.25 * 0.1 / 0.8 = 0.78125;
    # area 0.75 * 0.2 + 0.1 * (0.75 + 0.78125) / 2 = 0.2265625, over 0.3
    (0.3, 0.2265625 / 0.3),
    # the whole curve: 0.75 * 0.2 + 0.8 * (0.75 + 1) / 2 = 0.85
    (1.0, 0.85),
])
def test_pro_auc_by_hand(limit, expected):
    assert pro_auc(*two_regions(), fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_by_hand():
    # 6 defect and 10 normal pixels, 60 pairs. Defect scores .9 x4, .8, 0; normal .7, .5, 0 x8.
    # Each of the five found defect pixels beats all 10 normal ones (50); the 0 ties 8 (4) and
    # loses to 2: 54 / 60
    assert pixel_auroc(*two_regions()) == pytest.approx(0.9)


def test_regions_are_8_connected_and_per_image():
    # image 0: (0,0) touches (1,1) only at a corner, so with (1,2) it is one region of 3 pixels;
    # the map finds (0,0) alone: PRO 1/3 (4-connectivity would say regions of 1 and 2: (1 + 0) / 2)
    masks = np.zeros((2, 3, 3), int)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = 1
    # image 1: a region at the same place as image 0's (0,0): a region of its own, not found
    masks[1, 0, 0] = 1
    maps = np.zeros((2, 3, 3))
    maps[0, 0, 0] = 1.0
    _, pro = pro_curve(masks, maps)
    assert pro[1] == pytest.approx((1 / 3 + 0) / 2)


def test_pro_of_perfect_and_constant_maps():
    masks, _ = two_regions()
    assert pro_auc(masks, masks * 2.0 + 1) == 1.0  # every defect pixel above every normal one
    assert pixel_auroc(masks, masks * 2.0 + 1) == 1.0
    # all pixels tied: one threshold, the curve (0, 0) -> (1, 1): area 0.3 * 0.3 / 2, over 0.3
    assert pro_auc(masks, np.full(masks.shape, 0.5)) == pytest.approx(0.15)
    assert pixel_auroc(masks, np.full(masks.shape, 0.5)) == 0.5


def test_good_images_add_only_false_positives():
    masks, maps = two_regions()
    good_mask, good_map = np.zeros((1, 4, 4), int), np.full((1, 4, 4), 0.95)  # above every defect pixel
    fpr, pro = pro_curve(np.concatenate([masks, good_mask]), np.concatenate([maps, good_map]))
    # 26 normal pixels now; at 0.95 the good image's 16 are predicted: FPR 16/26, PRO 0
    assert fpr[1] == pytest.approx(16 / 26) and pro[1] == 0


def brute_force_pro(masks, maps):
    """The definition itself, threshold by threshold: label every image's regions, then at each
    distinct map value measure the overlap of every region and the false positives."""
    from scipy.ndimage import label
    regions = []
    for i, m in enumerate(masks):
        labelled, n = label(m, np.ones((3, 3), int))
        regions += [(i, labelled == k) for k in range(1, n + 1)]
    fprs, pros = [], []
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        fprs.append((predicted & (masks == 0)).sum() / (masks == 0).sum())
        pros.append(np.mean([predicted[i][r].mean() for i, r in regions]))
    return np.r_[0, fprs, 1], np.r_[0, pros, 1]


def test_pro_curve_matches_the_definition_on_random_maps():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 12, 12)) < 0.15).astype(np.uint8)
    masks[2] = 0  # a good image
    maps = np.round(rng.random((3, 12, 12)) + masks * 0.4, 1)  # rounded: many ties
    for ours, expected in zip(pro_curve(masks, maps), brute_force_pro(masks, maps)):
        np.testing.assert_allclose(ours, expected, atol=1e-12)


@pytest.mark.parametrize("masks, maps, match", [
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), "one shape"),
    (np.zeros((4, 4)), np.zeros((4, 4)), "one shape"),
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "no defect pixels"),
    (np.ones((1, 4, 4)), np.zeros((1, 4, 4)), "no normal pixels"),
    (np.full((1, 4, 4), 255), np.zeros((1, 4, 4)), "0/1"),
    (np.eye(4)[None], np.full((1, 4, 4), np.nan), "NaN"),
])
def test_pixel_metric_errors(masks, maps, match):
    for metric in (pixel_auroc, pro_auc):
        with pytest.raises(ValueError, match=match):
            metric(masks, maps)
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_auc(np.eye(4)[None], np.zeros((1, 4, 4)), fpr_limit=0)
