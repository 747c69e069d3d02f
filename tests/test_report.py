from noveltykit.analysis.report import PUBLISHED_TITLE, metric_table, metric_value, write_report


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


def _ours_and_published(table: str) -> tuple[list[str], list[str]]:
    ours, published = table.split(f"\n\n{PUBLISHED_TITLE}\n\n")
    return ours.splitlines(), published.splitlines()


def test_fashion_mnist_paper_column_has_only_the_published_mean():
    results = [{**_rec(c, 0, "gan", 0.9), "dataset": "fashion-mnist"} for c in range(10)]
    ours, published = _ours_and_published(metric_table(results))
    assert ours[0] == "| class | gan |" and ours[2] == "| 0 c0 | 0.9000 |" and ours[-1] == "| **MEAN** | **0.9000** |"
    assert published[0] == "| class | P-KDGAN teacher |"
    assert published[2] == "| 0 c0 | - |" and published[-1] == "| **MEAN** | 0.9311 |"
    _, partial = _ours_and_published(metric_table(results[:3]))
    assert partial[-1] == "| **MEAN** | - |"  # a mean over some classes has no published counterpart


def test_the_runs_come_first_and_the_published_values_apart_below_with_the_same_rows():
    results = [{**_rec(c, s, "knn", 0.6 + 0.01 * c), "dataset": "mnist"} for c in range(10) for s in (0, 1)]
    results += [{**_rec(c, 0, "gan", 0.9), "dataset": "mnist"} for c in (2, 3)]
    ours, published = _ours_and_published(metric_table(results))
    assert ours[0] == "| class | knn | gan |" and not any("OCSVM" in line for line in ours)
    assert [line.split(" | ")[0] for line in ours[-2:]] == ["| **MEAN**", "| **MEAN of classes 2, 3**"]
    assert published[0] == "| class | OCSVM | KDE | VAE | DSVDD | OCGAN | P-KDGAN teacher |"
    assert published[2] == "| 0 c0 | 0.988 | 0.885 | 0.997 | 0.980 | 0.998 | 0.996 |"
    # the same MEAN rows as the runs': all ten classes, then the classes every method ran
    assert published[-2] == "| **MEAN** | 0.9513 | 0.8143 | 0.9696 | 0.9480 | 0.9749 | 0.9780 |"
    assert published[-1] == "| **MEAN of classes 2, 3** | 0.9260 | 0.7015 | 0.9475 | 0.9180 | 0.9525 | 0.9690 |"
    assert len(published) == len(ours)  # header, rule, ten classes, two MEAN rows
    for without in (metric_table(results, with_paper=False), metric_table(results, "auroc_val")):  # not AUROC
        assert PUBLISHED_TITLE not in without and "OCSVM" not in without


def test_table_md_puts_the_runs_first_and_the_published_values_apart(tmp_path):
    results = [{**_rec(c, 0, "knn", 0.7), "dataset": "cifar10", "val_fraction": 0.1} for c in range(10)]
    for r in results:
        r.update(aupr=0.6, fpr95=0.5, test_fpr_at_threshold=0.05, test_tpr_at_threshold=0.5, params={},
                 fit_seconds=1.0, score_seconds=1.0, n_test=10)
    write_report(tmp_path, results)
    table = (tmp_path / "table.md").read_text()
    ours, published = table.split(PUBLISHED_TITLE)
    assert "| class | knn |" in ours and "| **MEAN** | **0.7000** |" in ours and "OCSVM" not in ours
    assert "| class | OCSVM | KDE | VAE | DSVDD | OCGAN | P-KDGAN teacher |" in published
    assert "| **MEAN** | 0.5856 | 0.6097 | 0.5833 | 0.6481 | 0.6563 | 0.7376 |" in published
    report = (tmp_path / "report.md").read_text()
    auroc, rest = report.split("## AUPR")
    assert PUBLISHED_TITLE in auroc and "| class | knn |" in auroc and PUBLISHED_TITLE not in rest


def test_detectors_on_pretrained_features_are_labelled_in_the_header():
    feat = {**_rec(0, 0, "feat-knn", 0.9), "feature_seconds": 12.0}
    lines = metric_table([_rec(0, 0, "knn", 0.7), feat]).splitlines()
    assert lines[0] == "| class | knn | feat-knn (ImageNet-pretrained) |"


def test_timing_table_gives_ranges_and_counts_resumed_cells_and_loaded_fits():
    from noveltykit.analysis.report import timing_table
    base = {"method": "ae", "n_test": 100, "score_seconds": 2.0}
    cells = [{**base, "fit_seconds": 10.0, "history": [{"seconds": 4.0}, {"seconds": 6.0}]},
             {**base, "fit_seconds": 3.0, "history": [{"seconds": 5.0, "from_checkpoint": True}, {"seconds": 3.0}]}]
    loaded = {**base, "fit_seconds": 0.1, "fit_loaded_from_cache": True,  # a load: its history is another run's
              "history": [{"seconds": 99.0, "from_checkpoint": True}]}
    row = timing_table(cells + [loaded]).splitlines()[2]
    assert row == "| ae | 6.50 | 3-10 | 2-2 | 3-6 | 100 | 3 | 1 | 1 |"
    assert timing_table([loaded]).splitlines()[2] == "| ae | - | - | 2-2 | - | 100 | 1 | 0 | 1 |"


def test_timing_table_counts_a_cell_resumed_by_its_record_not_only_its_history():
    """An ensemble's cell keeps its members' histories in `member_fits`, so its own `resumed`
    (the detector's `fit_resumed`) is what counts; a record without the field falls back to its
    history's marks."""
    from noveltykit.analysis.report import timing_table
    base = {"method": "ensemble", "n_test": 10, "score_seconds": 1.0, "fit_seconds": 5.0}
    cells = [{**base, "resumed": True, "member_fits": [{"history": [{"seconds": 2.0, "from_checkpoint": True}]}]},
             {**base, "resumed": False},
             {**base, "history": [{"seconds": 2.0, "from_checkpoint": True}]}]  # made before `resumed`
    assert timing_table(cells).splitlines()[2].split(" | ")[-2] == "2"
