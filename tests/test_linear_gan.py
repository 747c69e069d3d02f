"""The report's linear GAN (A.5): hand gradients against autograd, convergence to D = 1/2,
reproducibility and config checks. Everything float64 and small: the whole file runs in seconds."""
import math

import pytest
import torch

from noveltykit.train.linear_gan import (LinearGANConfig, d_g_convergence, gaussian_data, grad_lc_a, grad_lc_b,
                                         grad_lf_a, grad_lf_b, losses, pca_angles, train_linear_gan)

F64 = torch.float64


def gaussian(m: int = 8, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Zero-mean (exactly, after centring) Gaussian data with eigenvalues 4, 2, 1, ... in a random basis."""
    return gaussian_data(m, n, (4, 2, 1, 0.8, 0.6, 0.5, 0.5, 0.5), seed)


def random_inputs(m: int, c: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)
    return r(1, m), r(m, c), 1.5 * r(n, m), r(n + 3, c)  # x and z batches of different sizes


@pytest.mark.parametrize("m,c,n,seed", [(8, 2, 32, 0), (5, 5, 7, 1), (3, 1, 64, 2), (12, 4, 16, 3)])
def test_hand_gradients_match_autograd(m, c, n, seed):
    A, B, x, z = random_inputs(m, c, n, seed)
    A, B = A.requires_grad_(), B.requires_grad_()
    d = lambda y: torch.sigmoid(y @ A.T)  # the report's formulas, written out without softplus
    l_c = -torch.log(d(x)).mean() - torch.log(1 - d(z @ B.T)).mean()
    l_f = -torch.log(d(z @ B.T)).mean()
    hc, hf = losses(A, B, x, z)
    assert torch.allclose(hc, l_c, rtol=1e-12, atol=0) and torch.allclose(hf, l_f, rtol=1e-12, atol=0)
    lc_a, lc_b = torch.autograd.grad(l_c, (A, B), retain_graph=True)
    lf_a, lf_b = torch.autograd.grad(l_f, (A, B))
    with torch.no_grad():
        for hand, auto in [(grad_lc_a(A, B, x, z), lc_a), (grad_lf_a(A, B, z), lf_a),
                           (grad_lc_b(A, B, z), lc_b), (grad_lf_b(A, B, z), lf_b)]:
            assert hand.shape == auto.shape
            assert torch.allclose(hand, auto, rtol=1e-10, atol=1e-12)


def test_report_slip_correction():
    """A.5 writes (1 - 2D(theta_g)) g for the theta_g part of d(L_C + L_F); autograd gives the
    opposite sign wrt A, and wrt B it is (2D(theta_g) - 1) A^T z^T, not a multiple of g."""
    A, B, x, z = random_inputs(6, 2, 40, 7)
    A, B = A.requires_grad_(), B.requires_grad_()
    total = sum(losses(A, B, x, z))
    dA, dB = torch.autograd.grad(total, (A, B))
    with torch.no_grad():
        g, d_x = z @ B.T, torch.sigmoid(x @ A.T).squeeze(1)
        d_g = torch.sigmoid(g @ A.T).squeeze(1)
        report_g_term = (1 - 2 * d_g) @ g / len(g)
        x_term = (d_x - 1) @ x / len(x)
        assert torch.allclose(dA.squeeze(0) - x_term, -report_g_term, rtol=1e-10, atol=1e-12)
        assert torch.allclose(dB, A.T @ ((2 * d_g - 1) @ z / len(z)).unsqueeze(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_to_half_and_residual_shrinks(seed):
    """Theory (module docstring): for zero-mean data the Curator's optimum is A = 0, D = 1/2."""
    x = gaussian()
    result = train_linear_gan(x, LinearGANConfig(seed=seed, init_scale=2.0))
    report = d_g_convergence(result, tail=0.1, tol=0.01)
    assert report["converged"] == 1.0, report
    assert report["abs_error"] < 0.01
    res = result.history["residual_g"]
    start, end = sum(res[:10]) / 10, sum(res[-100:]) / 100
    assert end < 0.5 * start, (start, end)
    assert result.A.norm() < 0.25 * result.A_init.norm()  # A decays towards 0
    for name, angle in result.angles.items():  # diagnostics only: no claim that they align
        assert 0.0 <= angle <= 90.0, (name, angle)


def test_d_g_convergence_flags_a_run_that_is_not_at_half():
    x = gaussian()
    result = train_linear_gan(x, LinearGANConfig(steps=20, init_scale=2.0))
    result.history["D_g"] = [0.9] * 20
    assert d_g_convergence(result)["converged"] == 0.0
    with pytest.raises(ValueError, match="tail"):
        d_g_convergence(result, tail=0)


def test_pca_angles_are_zero_for_the_principal_directions():
    x = gaussian()
    vecs = torch.linalg.eigh(x.T @ x / (len(x) - 1)).eigenvectors
    angles = pca_angles(x, 3 * vecs[:, -1:].T, vecs[:, -2:] @ torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=F64))
    assert angles["A_vs_pc1"] == pytest.approx(0, abs=1e-5)
    assert angles["colB_vs_top_c"] == pytest.approx(0, abs=1e-5)
    assert pca_angles(x, vecs[:, :1].T, vecs[:, :2])["A_vs_pc1"] == pytest.approx(90, abs=1e-5)


def test_same_seed_same_history_different_seed_differs():
    x = gaussian()
    cfg = LinearGANConfig(steps=50, k=2)
    a, b = train_linear_gan(x, cfg), train_linear_gan(x, cfg)
    assert a.history == b.history and torch.equal(a.A, b.A) and torch.equal(a.B, b.B)
    c = train_linear_gan(x, LinearGANConfig(steps=50, k=2, seed=1))
    assert c.history["L_C"] != a.history["L_C"]


@pytest.mark.parametrize("field,value", [("m", 0), ("c", -1), ("steps", 0), ("k", 0), ("batch_size", 0),
                                         ("lr_d", 0.0), ("lr_g", -0.1), ("lr_d", math.nan),
                                         ("init_scale", 0.0), ("m", 2.5)])
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        LinearGANConfig(**{field: value})


def test_noise_dim_above_data_dim_and_bad_data_raise():
    with pytest.raises(ValueError, match="noise dim c must be <= data dim m"):
        LinearGANConfig(m=2, c=3)
    with pytest.raises(ValueError, match="shape"):
        train_linear_gan(torch.zeros(10, 3), LinearGANConfig())
    with pytest.raises(ValueError, match="finite"):
        train_linear_gan(torch.full((10, 8), math.nan), LinearGANConfig())


def test_cli_writes_the_run_and_its_curves(tmp_path, capsys):
    import json

    from noveltykit.cli import main
    assert main(["linear-gan", "--steps", "400", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "linear-gan.json").read_text())
    assert record["convergence"]["converged"] == 1.0 and len(record["history"]["D_g"]) == 400
    assert record["config"]["m"] == 8 and record["data"]["eigenvalues"][:2] == [4.0, 2.0]
    assert (tmp_path / "linear-gan.png").stat().st_size > 1000
    assert "converged to" in capsys.readouterr().out
