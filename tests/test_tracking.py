"""`bench --tensorboard DIR`: event files that say what the JSON records say."""
import builtins

import pytest

from conftest import make_blobs_dataset
from noveltykit.experiments.bench import BenchConfig, cell_stem, run_benchmark
from noveltykit.detectors.specs import MethodSpec
from noveltykit.experiments.tracking import summary_writer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def scalars(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_records_numbers(tmp_path):
    cfg = BenchConfig(dataset="blobs", methods=["ae:epochs=3,batch_size=8", "knn"], classes=[0], out=str(tmp_path / "b"),
                      plots=False, tensorboard=str(tmp_path / "tb"))
    records = {r["method"]: r for r in run_benchmark(cfg, dataset=make_blobs_dataset(), progress=False)}
    ae = scalars(records["ae:epochs=3,batch_size=8"]["tensorboard"])
    assert ae["cell/auroc"] == [(0, pytest.approx(records["ae:epochs=3,batch_size=8"]["auroc"]))]
    history = records["ae:epochs=3,batch_size=8"]["history"]
    assert [s for s, _ in ae["epoch/val_loss"]] == [row["epoch"] for row in history] == [0, 1, 2]
    assert [v for _, v in ae["epoch/val_loss"]] == pytest.approx([row["val_loss"] for row in history])
    knn = scalars(records["knn"]["tensorboard"])
    assert knn["cell/auroc"] == [(0, pytest.approx(records["knn"]["auroc"]))] and not any(t.startswith("epoch/") for t in knn)


def test_a_rerun_cell_replaces_its_events(tmp_path):
    run = tmp_path / "tb" / cell_stem(MethodSpec.parse("knn"), 0, 0)
    run.mkdir(parents=True)
    (run / "events.out.tfevents.old").write_bytes(b"stale")
    cfg = BenchConfig(dataset="blobs", methods=["knn"], classes=[0], out=str(tmp_path / "b"), plots=False,
                      tensorboard=str(tmp_path / "tb"))
    record, = run_benchmark(cfg, dataset=make_blobs_dataset(), progress=False)
    assert record["tensorboard"] == str(run) and not (run / "events.out.tfevents.old").exists()


def test_tensorboard_missing_is_a_clear_message_before_any_work(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pip install 'noveltykit\[tensorboard\]'"):
        summary_writer()
    with pytest.raises(ImportError, match="needs TensorBoard"):
        BenchConfig(dataset="blobs", methods=["knn"], out=str(tmp_path), tensorboard=str(tmp_path / "tb"))
