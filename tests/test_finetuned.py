"""The fine-tuned feature detectors (feat-msc, feat-panda) and the augmentations they train on:
seeded and reproducible on a CPU, frozen blocks stay frozen, the losses are the papers'."""
import math

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.data.transforms import random_colour_jitter, random_resized_crops
from noveltykit.features.extractor import load_backbone

from conftest import needs_weights, smooth_colour_images


def _images(n=24, size=32, seed=0):
    return smooth_colour_images(n, size, seed)


def test_a_whole_unmirrored_crop_is_a_resize_and_draws_are_seeded():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    same = random_resized_crops(x, 16, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1), flip_p=0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    mirrored = random_resized_crops(x, 16, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1), flip_p=1)
    torch.testing.assert_close(mirrored, x.flip(-1), atol=1e-5, rtol=0)
    a = random_resized_crops(x, 24, torch.Generator().manual_seed(3))
    b = random_resized_crops(x, 24, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 24, 24) and torch.equal(a, b)
    assert not torch.equal(a, random_resized_crops(x, 24, torch.Generator().manual_seed(4)))


def test_colour_jitter_off_is_the_identity_and_on_stays_in_range():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(random_colour_jitter(x, torch.Generator().manual_seed(0), p=0, grey_p=0), x,
                               atol=1e-6, rtol=0)
    grey = random_colour_jitter(x, torch.Generator().manual_seed(0), p=0, grey_p=1)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    y = random_colour_jitter(x, torch.Generator().manual_seed(1), strength=0.9)
    assert y.min() >= -1 and y.max() <= 1 and not torch.allclose(y, x)
    assert random_colour_jitter(x[:, :1], torch.Generator().manual_seed(1)).shape == (6, 1, 8, 8)


def test_the_contrastive_loss_is_nt_xent():
    from noveltykit.detectors.finetuned import contrastive_loss
    e = torch.eye(2)
    # two images on orthogonal directions, each view equal to its pair: for row i the positive has
    # cosine 1, the two negatives cosine 0, so loss = -log(e^(1/t) / (e^(1/t) + 2))
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert contrastive_loss(e, e, t).item() == pytest.approx(expected, rel=1e-6)
    # swapping the pairs makes every positive the worst candidate: a larger loss
    assert contrastive_loss(e, e.flip(0), t).item() > expected


@needs_weights
@pytest.mark.parametrize("name, extra", [("feat-msc", {}), ("feat-panda", {"pull": 0.0})])
def test_a_fit_is_reproducible_and_keeps_frozen_blocks(name, extra):
    x = _images()
    params = dict(size=32, epochs=2, batch_size=8, frozen_blocks=12, lr=1e-3, **extra)
    a = detectors.make(name, **params).fit(x[:16], x[16:20])
    b = detectors.make(name, **params).fit(x[:16], x[16:20])
    np.testing.assert_array_equal(a.decision_function(x[20:]), b.decision_function(x[20:]))
    pretrained = load_backbone("efficientnet-lite0").state_dict()
    tuned = a.model_.net.state_dict()
    frozen = [k for k in tuned if k.startswith(("_conv_stem", "_bn0", *(f"_blocks.{i}." for i in range(12))))]
    trained = [k for k in tuned if k.startswith(("_blocks.15.", "_conv_head")) and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(tuned[k], pretrained[k]) for k in frozen)
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in trained)
    assert a.model_.bank.shape == (16, 1280) and a.history_[-1]["epoch"] == 1


@needs_weights
def test_the_pull_keeps_panda_near_its_pretrained_weights():
    x = _images()
    drift = {}
    for pull in (0.0, 100.0):
        det = detectors.make("feat-panda", size=32, epochs=2, batch_size=8, frozen_blocks=12, lr=1e-3,
                             pull=pull).fit(x[:16], x[16:20])
        start = load_backbone("efficientnet-lite0").state_dict()
        drift[pull] = sum((p - start[k]).pow(2).sum().item() for k, p in det.model_.net.state_dict().items()
                          if k in start and p.dtype.is_floating_point)
    assert 0 < drift[100.0] < drift[0.0]


@pytest.mark.parametrize("name, bad, match", [
    ("feat-msc", {"temperature": 0}, "temperature"), ("feat-msc", {"angular": "yes"}, "angular"),
    ("feat-panda", {"pull": -1}, "pull"), ("feat-msc", {"frozen_blocks": 17}, "frozen_blocks"),
    ("feat-panda", {"k": 0}, "k must"), ("feat-msc", {"size": 8}, "size")])
def test_bad_parameters_are_named(name, bad, match):
    with pytest.raises(ValueError, match=match):
        detectors.make(name, **bad)


@needs_weights
@pytest.mark.parametrize("method", ["feat-msc:size=32,epochs=1,batch_size=8,frozen_blocks=14",
                                    "ensemble:members=feat-panda/size=32/epochs=1/frozen_blocks=14+knn"])
def test_fit_and_score_from_the_command_line(tmp_path, method):
    from PIL import Image

    from noveltykit.cli import main
    for folder, seed in (("normal", 0), ("new", 1)):
        (tmp_path / folder).mkdir()
        for i, img in enumerate(_images(12, seed=seed)):
            Image.fromarray(np.moveaxis(img, 0, -1)).save(tmp_path / folder / f"{i}.png")
    model = tmp_path / "model"
    assert main(["fit", "--method", method, "--train", str(tmp_path / "normal"), "--out", str(model), "--quiet"]) == 0
    assert main(["score", str(model), str(tmp_path / "new"), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert len(rows) == 13 and all(np.isfinite(float(r.split(",")[1])) for r in rows[1:])
    reloaded = detectors.load(model)
    assert reloaded.get_params()["random_state"] == 0


@needs_weights
def test_a_fitted_feat_msc_is_served_with_the_scores_of_score(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from PIL import Image

    from noveltykit.apply.fit import fit_folder
    from noveltykit.apply.score import score_files
    from noveltykit.apply.serve import create_app
    from test_serve import png, request, running
    (tmp_path / "normal").mkdir()
    for i, img in enumerate(_images(12)):
        Image.fromarray(np.moveaxis(img, 0, -1)).save(tmp_path / "normal" / f"{i}.png")
    model = tmp_path / "model"
    fit_folder("feat-msc:size=32,epochs=1,batch_size=8,frozen_blocks=14", tmp_path / "normal", model, progress=False)
    uploads = [(f"new{i}.png", png(np.moveaxis(img, 0, -1))) for i, img in enumerate(_images(3, seed=1))]
    for name, data in uploads:
        (tmp_path / name).write_bytes(data)
    expected = score_files(detectors.load(model), [tmp_path / n for n, _ in uploads], progress=False)
    with running(create_app(model)) as url:
        status, body = request(f"{url}/v1/score", uploads)
    assert status == 200 and body["results"]
    for row, want in zip(body["results"], expected):
        assert row["score"] == pytest.approx(want.score, rel=1e-5, abs=1e-6), row


@needs_weights
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_fine_tuned_on_cuda_scores_alike_on_the_cpu(tmp_path):
    from noveltykit.detectors.context import RunContext
    x = _images()
    gpu = detectors.make("feat-msc", size=32, epochs=1, batch_size=8, frozen_blocks=12, lr=1e-3)
    gpu.configure(RunContext(device="cuda")).fit(x[:16], x[16:20])
    assert gpu.context.torch_device.startswith("cuda")
    gpu.save(tmp_path / "m")
    cpu = detectors.load(tmp_path / "m")
    np.testing.assert_allclose(cpu.decision_function(x[20:]), gpu.decision_function(x[20:]), rtol=1e-3, atol=1e-4)
