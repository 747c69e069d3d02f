from noveltykit.analysis.report import metric_table, metric_value


def _rec(cls, seed, method, auroc):
    return {"dataset": "blobs", "protocol": "one-vs-rest", "class": cls, "class_name": f"c{cls}",
            "seed": seed, "method": method, "auroc": auroc}


def test_mean_rows_compare_like_with_like():
    results = [_rec(c, s, "knn", 0.5 + 0.1 * c + 0.01 * s) for c in range(3) for s in (0, 1)]
    results += [_rec(c, 0, "gan", 0.9) for c in (1, 2)]
    lines = metric_table(results).splitlines()
    assert lines[0] == "| class | knn | gan |"
    mean, common = lines[-2], lines[-1]
    # knn: per-seed means 0.6 and 0.61 -> 0.605 ± std; gan misses class 0, so no overall mean
    assert mean.startswith("| **MEAN** | **0.6050 ± 0.0071** | - |")
    assert common.startswith("| **MEAN of classes 1, 2** | **0.6550 ± 0.0071** | **0.9000** |")
    assert "| 0 c0 | 0.5050 ± 0.0071 | - |" in lines


def test_single_seed_cells_have_no_spread():
    table = metric_table([_rec(0, 0, "knn", 0.7), _rec(1, 0, "knn", 0.8)])
    assert "±" not in table and "**0.7500**" in table


def test_val_selected_auroc_is_read_at_the_lowest_validation_loss():
    trained = _rec(0, 0, "gan", 0.70)  # the last epoch's AUROC
    trained["history"] = [{"val_loss": 3.0, "diagnostic_test_auroc": 0.60},
                          {"val_loss": 1.0, "diagnostic_test_auroc": 0.80},  # lowest validation loss
                          {"val_loss": 2.0, "diagnostic_test_auroc": 0.95}]  # best on test: never chosen
    no_curves = _rec(0, 0, "knn", 0.5)
    assert metric_value(trained, "auroc_val") == 0.80 and metric_value(no_curves, "auroc_val") is None
    table = metric_table([trained, no_curves], metric="auroc_val")
    assert "| 0 c0 | 0.8000 | - |" in table


def test_fashion_mnist_paper_column_has_only_the_published_mean():
    results = [{**_rec(c, 0, "gan", 0.9), "dataset": "fashion-mnist"} for c in range(10)]
    lines = metric_table(results).splitlines()
    assert lines[0] == "| class | gan | paper P-KDGAN teacher |"
    assert lines[2].endswith("| 0.9000 | - |") and lines[-1].endswith("| **0.9000** | 0.9311 |")
    partial = metric_table(results[:3]).splitlines()
    assert partial[-1].endswith("| - |")  # a mean over some classes has no published counterpart


def test_detectors_on_pretrained_features_are_labelled_in_the_header():
    feat = {**_rec(0, 0, "feat-knn", 0.9), "feature_seconds": 12.0}
    lines = metric_table([_rec(0, 0, "knn", 0.7), feat]).splitlines()
    assert lines[0] == "| class | knn | feat-knn (ImageNet-pretrained) |"


def test_timing_table_gives_ranges_and_counts_resumed_cells():
    from noveltykit.analysis.report import timing_table
    base = {"method": "ae", "n_test": 100, "score_seconds": 2.0}
    cells = [{**base, "fit_seconds": 10.0, "history": [{"seconds": 4.0}, {"seconds": 6.0}]},
             {**base, "fit_seconds": 3.0, "history": [{"seconds": 5.0, "from_checkpoint": True}, {"seconds": 3.0}]}]
    row = timing_table(cells).splitlines()[2]
    assert row == "| ae | 6.50 | 3-10 | 2-2 | 3-6 | 100 | 2 | 1 |"
