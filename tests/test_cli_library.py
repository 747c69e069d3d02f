"""The library functions behind the command line, called from Python as the commands call them."""
import json
import re

import pytest

from noveltykit.analysis.report import report_runs
from noveltykit.analysis.results import load_results, merge_results, read_runs


def _record(method, cls, seed, auroc=0.9, dataset="blobs", protocol="one-vs-rest"):
    return {"method": method, "class": cls, "class_name": f"c{cls}", "seed": seed, "auroc": auroc,
            "dataset": dataset, "protocol": protocol}


def _run(root, name, records):
    (root / name).mkdir()
    (root / name / "results.json").write_text(json.dumps({"results": records}))
    return str(root / name)


def test_merge_filters_and_orders_the_methods_asked_for(tmp_path):
    a = _run(tmp_path, "a", [_record("knn", c, s) for c in (0, 1) for s in (0, 1)])
    b = _run(tmp_path, "b", [_record("pca", c, s) for c in (0, 1) for s in (0, 1)])
    merged = merge_results(read_runs([a, b]), seeds=[1], classes=[0], methods=["pca", "knn"])
    assert [(r["method"], r["class"], r["seed"]) for r in merged] == [("pca", 0, 1), ("knn", 0, 1)]
    assert len(merge_results(read_runs([a, b]))) == 8
    with pytest.raises(ValueError, match=r"no results for method\(s\) \['kde'\]"):
        merge_results(read_runs([a]), methods=["kde"])


def test_merge_refuses_one_cell_in_two_folders_and_mixed_datasets(tmp_path):
    a = _run(tmp_path, "a", [_record("knn", 0, 0), _record("knn", 0, 1)])
    a2 = _run(tmp_path, "a2", [_record("knn", 0, 1)])
    with pytest.raises(ValueError, match=re.escape(f"{a} and {a2} both hold knn class 0 seed 1")):
        merge_results(read_runs([a, a2]))
    with pytest.raises(ValueError, match="both hold"):  # the same folder twice is two copies too
        merge_results(read_runs([a, a]))
    assert len(merge_results(read_runs([a, a2]), seeds=[0])) == 1  # narrowed apart: fine
    m = _run(tmp_path, "m", [_record("pca", 0, 0, dataset="mnist")])
    with pytest.raises(ValueError, match="different datasets or protocols"):
        merge_results(read_runs([a, m]))


def test_read_runs_needs_results_in_every_folder(tmp_path):
    a = _run(tmp_path, "a", [_record("knn", 0, 0)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no results.json with results"):
        read_runs([a, str(tmp_path / "empty")])
    assert load_results(tmp_path / "empty" / "results.json") == []
    (tmp_path / "empty" / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a noveltykit results file"):
        load_results(tmp_path / "empty" / "results.json")


def test_report_runs_is_the_table_of_the_merged_cells(tmp_path):
    a = _run(tmp_path, "a", [_record("knn", c, s, auroc=0.5 + 0.1 * c + 0.01 * s) for c in (0, 1) for s in (0, 1)])
    b = _run(tmp_path, "b", [_record("pca", 0, 0, auroc=0.75)])
    table = report_runs([a, b], classes=[0], methods=["pca", "knn"], with_paper=False)
    assert table.splitlines()[0] == "| class | pca | knn |"
    assert "| 0 c0 | 0.7500 | 0.5050 ± 0.0071 |" in table
    assert not (tmp_path / "a" / "table.md").exists()  # several folders: none of their own files is rewritten


def test_report_shows_companions_as_columns_of_their_own(tmp_path):
    ens = _record("ensemble", 0, 0, auroc=0.8) | {"member0-knn_auroc": 0.7, "member1-pca_auroc": 0.6,
                                                  "companions": ["member0-knn", "member1-pca"], "fit_seconds": 1.0,
                                                  "score_seconds": 0.1, "n_test": 10}
    a = _run(tmp_path, "a", [ens])
    b = _run(tmp_path, "b", [_record("knn", 0, 0, auroc=0.5) | {"fit_seconds": 2.0, "score_seconds": 0.2, "n_test": 10}])
    table = report_runs([a, b], with_paper=False, companions=True, times=True)
    # each folder's companions right after its own methods
    assert table.splitlines()[0] == "| class | ensemble | ensemble [member0-knn] | ensemble [member1-pca] | knn |"
    assert "| 0 c0 | 0.8000 | 0.7000 | 0.6000 | 0.5000 |" in table
    assert "ensemble [member0-knn] |" not in table.split("| method | fit s")[1]  # timed within its cell
    chosen = report_runs([a, b], with_paper=False, companions=True, methods=["ensemble [member1-pca]"])
    assert chosen.splitlines()[0] == "| class | ensemble [member1-pca] |"
    assert "member0-knn" not in report_runs([a, b], with_paper=False)  # only when asked for
    with pytest.raises(ValueError, match="companions have an AUROC only"):
        report_runs([a, b], "aupr", companions=True)


def test_cellstore_and_bench_still_read_results_through_analysis():
    from noveltykit.experiments import bench, cellstore
    assert cellstore.load_results is load_results and bench.load_results is load_results


def test_sweep_config_from_pairs_refuses_a_key_twice_and_an_empty_sweep(tmp_path):
    from noveltykit.experiments.sweep import SweepConfig
    with pytest.raises(ValueError, match=r"--grid names a parameter twice: \['k', 'k'\]"):
        SweepConfig.from_pairs([("k", ["1"]), ("k", ["2"])], dataset="blobs", method="knn", classes=[0],
                               out=str(tmp_path))
    with pytest.raises(ValueError, match="give --grid KEY=V1,V2 or --variant SPEC"):
        SweepConfig.from_pairs([], [], dataset="blobs", method="knn", classes=[0], out=str(tmp_path))
    cfg = SweepConfig.from_pairs([("k", ["1", "2"])], dataset="blobs", method="knn", classes=[0], out=str(tmp_path))
    assert cfg.grid == {"k": [1, 2]} and cfg.variants == []


def test_run_linear_gan_writes_what_it_returns(tmp_path):
    from noveltykit.experiments.linear_gan_run import run_linear_gan
    record = run_linear_gan(tmp_path, steps=20, eigenvalues=["4", "2", "1"], command="python")
    assert json.loads((tmp_path / "linear-gan.json").read_text()) == json.loads(json.dumps(record))
    assert record["data"]["eigenvalues"] == (4.0, 2.0, 1.0) and record["command"] == "python"
    assert (tmp_path / "linear-gan.png").exists() and len(record["history"]["D_g"]) == 20


def test_student_spec_checks_the_teacher_and_keeps_its_path_out_of_the_label(tmp_path):
    from noveltykit.detectors import ModelFileError
    from noveltykit.detectors.kdgan import student_spec
    with pytest.raises(ModelFileError):
        student_spec(teacher=tmp_path / "nothing")
    spec, plan = student_spec("2", width=1, budget="quick", epochs=3)
    assert plan == "KDGAN-2" and spec.detector == "kdgan"
    assert spec.label == "kdgan:structure=2,width=1,preset=student,budget=quick,epochs=3"
    assert dict(spec.params)["epochs"] == 3 and "teacher_dir" not in dict(spec.params)


def test_profile_against_teacher_gives_the_ratios_the_cli_prints():
    from noveltykit.nets.profile import profile_against_teacher
    name, params, macs, p_ratio, m_ratio = profile_against_teacher("ede-gan", 2, 1)[0]
    assert name == "generator" and round(params / 1e6, 4) == 0.1004
    assert f"{p_ratio:.2f} {m_ratio:.2f}" == "50.97 315.43"
    assert all(r[3] is None and r[4] is None for r in profile_against_teacher("ede-gan", 64, 1))
