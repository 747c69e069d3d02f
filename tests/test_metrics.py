import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve as sk_roc_curve

from noveltykit.analysis.metrics import all_metrics, aupr, auroc, fpr_at_tpr, precision_at_n, roc_curve


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
