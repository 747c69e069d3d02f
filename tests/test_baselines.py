"""Each classical baseline against an independent reference computation."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KernelDensity, NearestNeighbors
from sklearn.svm import OneClassSVM

from noveltykit import detectors
from noveltykit.detectors.distances import sq_dist_blocks, squared_norms
from noveltykit.detectors.kde import gaussian_kde_logpdf
from noveltykit.detectors.knn import knn_distances

from conftest import make_blobs_dataset


@pytest.fixture(scope="module")
def data():
    ds = make_blobs_dataset(n_train=80, n_test=40, channels=1)
    normal = ds.train_x[ds.train_y == 0]
    flat = lambda x: (x.reshape(len(x), -1).astype(np.float64) / 127.5 - 1)
    return normal[:70], normal[70:], ds.test_x, flat


def test_distance_blocks_respect_budget_and_are_exact():
    rng = torch.Generator().manual_seed(0)
    q, r = torch.randn(37, 5, generator=rng), torch.randn(23, 5, generator=rng)
    full = torch.cdist(q, r).pow(2)
    out = torch.empty(37, 23)
    for qs, blocks in sq_dist_blocks(q, r, max_block_elems=50):
        for rs, d2 in blocks:
            assert d2.numel() <= 50
            out[qs, rs] = d2
    torch.testing.assert_close(out, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("budget", [7, 1 << 20])  # tiny budget: many reference blocks per query
def test_knn_matches_brute_force(data, budget):
    train, val, test, flat = data
    det = detectors.make("knn", k=3, max_block_elems=budget).fit(train, val)
    dist, _ = NearestNeighbors(n_neighbors=3).fit(flat(train)).kneighbors(flat(test))
    np.testing.assert_allclose(det.decision_function(test), dist.mean(1), rtol=1e-4)
    summed = detectors.make("knn", k=3, aggregate="sum", max_block_elems=budget).fit(train, val)
    np.testing.assert_allclose(summed.decision_function(test), dist.sum(1), rtol=1e-4)


def test_a_banks_norms_are_kept_and_follow_an_in_place_change():
    """Scoring again against the same bank reuses its row norms; a bank changed in place (or a new
    tensor) gets fresh ones, so the distances stay exact."""
    q, r = torch.randn(5, 4), torch.randn(9, 4)
    assert squared_norms(r) is squared_norms(r)
    before = knn_distances(q, r, 2)
    torch.testing.assert_close(before, torch.cdist(q, r).topk(2, largest=False).values)
    r.mul_(3.0)
    torch.testing.assert_close(knn_distances(q, r, 2), torch.cdist(q, r).topk(2, largest=False).values)
    with torch.inference_mode():
        frozen = torch.randn(9, 4)
    torch.testing.assert_close(squared_norms(frozen), frozen.pow(2).sum(1))


def test_knn_distances_handle_fewer_refs_than_block():
    q, r = torch.randn(4, 3), torch.randn(2, 3)
    assert knn_distances(q, r, 2, max_block_elems=1).shape == (4, 2)


def test_ocsvm_scores_equal_sklearn_decision(data):
    train, val, test, flat = data
    det = detectors.make("ocsvm", nu=0.2).fit(train, val)
    ref = OneClassSVM(kernel="rbf", nu=0.2, gamma="scale").fit(flat(train))
    np.testing.assert_allclose(det.decision_function(test), -ref.decision_function(flat(test)),
                               rtol=1e-5, atol=1e-6)  # inputs differ by float32 rounding


def test_kde_logpdf_matches_sklearn_and_bandwidth_maximises_validation_likelihood(data):
    train, val, test, flat = data
    h = 0.7
    ours = gaussian_kde_logpdf(torch.from_numpy(flat(test)), torch.from_numpy(flat(train)),
                               torch.tensor([h], dtype=torch.float64), max_block_elems=100)[:, 0]
    ref = KernelDensity(bandwidth=h).fit(flat(train)).score_samples(flat(test))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-8)

    det = detectors.make("kde").fit(train, val)
    lls = [KernelDensity(bandwidth=b).fit(flat(train)).score_samples(flat(val)).mean()
           for b in det.bandwidth_grid_]
    assert det.bandwidth_ == pytest.approx(det.bandwidth_grid_[int(np.argmax(lls))])
    assert 0 < np.argmax(lls) < len(lls) - 1, "the chosen bandwidth should be inside the grid"
    ref_best = KernelDensity(bandwidth=det.bandwidth_).fit(flat(train)).score_samples(flat(test))
    np.testing.assert_allclose(det.decision_function(test), -ref_best, rtol=1e-6)


@pytest.mark.parametrize("n_components", [5, 0.8])
def test_pca_reconstruction_error_matches_sklearn(data, n_components):
    train, val, test, flat = data
    det = detectors.make("pca", n_components=n_components).fit(train, val)
    ref = PCA(n_components=n_components, svd_solver="full").fit(flat(train))
    recon = ref.inverse_transform(ref.transform(flat(test)))
    assert det.components_.shape[0] == ref.n_components_
    np.testing.assert_allclose(det.decision_function(test), ((flat(test) - recon) ** 2).sum(1), rtol=1e-6)


@pytest.mark.parametrize("n_components", [5, 0.8])
def test_pca_with_fewer_images_than_pixels_matches_sklearn(data, n_components):
    """N < D takes the SVD path instead of the D x D eigenproblem: the same model."""
    train, val, test, flat = data
    few = train[:30]  # 30 images of 64 pixels
    det = detectors.make("pca", n_components=n_components).fit(few, val)
    ref = PCA(n_components=n_components, svd_solver="full").fit(flat(few))
    recon = ref.inverse_transform(ref.transform(flat(test)))
    assert det.components_.shape[0] == ref.n_components_
    np.testing.assert_allclose(det.decision_function(test), ((flat(test) - recon) ** 2).sum(1), rtol=1e-6)
