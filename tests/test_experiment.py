"""Policies for the experiment package (python -m experiment), on tiny synthetic MNIST-format files.

The files are real IDX files read by torchvision.datasets.MNIST(download=False); the synthetic digits
are learnable, so "accuracy far above chance (10%)" is a real check that training works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiment import cli, runner
from experiment.runner import fit
from experiment.train import Net
from tests.mnist_idx import FILES, write_mnist

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "experiment", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def cfg(**kw):
    base = {"epochs": 2, "log_interval": 1000, "device": "cpu", "lr": 0.03}
    return runner.ExperimentConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"), n_train=640, n_test=200)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    """The CLI contract run: `python -m experiment train --data-dir DIR --epochs N --output-dir OUT --device cpu`."""
    out = tmp_path_factory.mktemp("run")
    proc = run_cli(
        "train",
        "--data-dir",
        str(tiny),
        "--epochs",
        "2",
        "--output-dir",
        str(out),
        "--device",
        "cpu",
        "--loader",
        "tensor",
        "--no-progress",
    )
    assert proc.returncode == 0, f"train failed:\n{proc.stderr[-3000:]}"
    return out


def test_train_cli_writes_the_contracted_run_folder(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "train_images_per_s",
        "eval_images_per_s",
        "epochs",
        "device",
        "world_size",
        "seconds",
        "torch_version",
        "config",
        "per_epoch",
    ):
        assert key in metrics, f"metrics.json lacks {key!r}"
    assert metrics["epochs"] == 2 and len(metrics["per_epoch"]) == 2, "one per-epoch row per epoch"
    assert metrics["device"] == "cpu" and metrics["world_size"] == 1
    assert metrics["train_images_per_s"] > 0
    assert metrics["config"]["batchSize"] == 64 and metrics["config"]["loader"] == "tensor", "resolved config saved"
    for name in ("train_loss.png", "ground_truth.png", "predictions.png"):
        assert (trained / name).read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG"
        assert f"]({name})" in (trained / "report.md").read_text(), f"report.md does not embed {name}"


def test_training_learns_far_above_chance(trained):
    accuracy = json.loads((trained / "metrics.json").read_text())["test_accuracy"]
    assert accuracy > 60, f"after 2 epochs on learnable synthetic digits accuracy is {accuracy}% (chance is 10%)"


def test_saved_model_is_a_state_dict_that_loads_back(trained):
    model = Net()
    model.load_state_dict(torch.load(trained / "mnist_cnn.pt", weights_only=True))


def test_evaluate_reproduces_the_training_accuracy(trained, tiny):
    assert cli.main(["evaluate", "--data-dir", str(tiny), "--output-dir", str(trained), "--device", "cpu"]) == 0
    evaluation = json.loads((trained / "evaluation.json").read_text())
    metrics = json.loads((trained / "metrics.json").read_text())
    assert evaluation["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_predict_reads_png_digits(trained, tiny, tmp_path, capsys):
    from PIL import Image

    from tests.mnist_idx import make_split

    images, labels = make_split(8, seed=1)  # the test split's first images
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(images[i]).resize((56, 56)).save(paths[-1])  # any size: predict resizes
    assert cli.main(["predict", "--output-dir", str(trained), "--device", "cpu", *map(str, paths)]) == 0
    results = json.loads((trained / "predictions.json").read_text())
    hits = sum(r["digit"] == int(t) for r, t in zip(results, labels, strict=True))
    assert hits >= 6, f"only {hits}/8 PNG digits predicted right: {results}"
    assert "digit0.png:" in capsys.readouterr().out


def test_both_pipelines_take_the_same_steps_and_learn(tiny, tmp_path):
    tv = fit(
        cfg(epochs=1, loader="torchvision"), tiny, tmp_path / "tv", download=False, progress=False, log=lambda *a: 0
    )
    te = fit(cfg(epochs=1, loader="tensor"), tiny, tmp_path / "te", download=False, progress=False, log=lambda *a: 0)
    assert len(tv["train_losses"]) == len(te["train_losses"]) == 10, "640 images / batch 64 = 10 steps each"
    assert tv["test_accuracy"] > 50 and te["test_accuracy"] > 50


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    quiet = {"download": False, "progress": False, "log": lambda *a: 0}
    whole = fit(cfg(), tiny, tmp_path / "whole", **quiet)

    calls = {"n": 0}
    real_evaluate = runner.evaluate

    def crash_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash after training epoch 2, before its checkpoint")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(runner, "evaluate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg(), tiny, tmp_path / "crashed", **quiet)
    assert not (tmp_path / "crashed" / "metrics.json").exists(), "metrics.json must only exist for finished runs"
    assert torch.load(tmp_path / "crashed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(runner, "evaluate", real_evaluate)

    resumed = fit(cfg(), tiny, tmp_path / "crashed", resume=True, **quiet)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["per_epoch"][-1]["train_loss"] == whole["per_epoch"][-1]["train_loss"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["train_losses"] == whole["train_losses"], "loss curve differs after resume"
    a = torch.load(tmp_path / "whole" / "mnist_cnn.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "mnist_cnn.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run's"


def test_resume_without_checkpoint_starts_fresh_and_says_so(tiny, tmp_path):
    said = []
    metrics = fit(cfg(epochs=1), tiny, tmp_path, resume=True, download=False, progress=False, log=said.append)
    assert any("no checkpoint" in line and "starting fresh" in line for line in said), said
    assert metrics["resumed_from_epoch"] is None


def test_resume_refuses_a_checkpoint_with_other_settings(tiny, tmp_path, capsys):
    fit(cfg(epochs=1), tiny, tmp_path, download=False, progress=False, log=lambda *a: 0)
    rc = cli.main(
        [
            "train",
            "--data-dir",
            str(tiny),
            "--output-dir",
            str(tmp_path),
            "--resume",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--no-progress",
            "--lr",
            "0.03",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "batch_size: checkpoint 64, now 32" in err, err


def train_offline(data_dir: Path) -> int:
    """`train` on data_dir with downloads off, as a user without internet would run it."""
    return cli.main(
        [
            "train",
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(data_dir / "out"),
            "--no-download",
            "--device",
            "cpu",
        ]
    )


def test_missing_data_says_where_to_put_which_files(tmp_path, capsys):
    rc = train_offline(tmp_path)
    err = capsys.readouterr().err
    assert rc == 1
    for names in FILES.values():
        for name in names:
            assert str(tmp_path / "MNIST" / "raw" / name) in err, f"the error does not name {name}:\n{err}"
    assert "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated-images", "bad-magic", "labels-short"])
def test_corrupt_data_gives_a_clear_error(tmp_path, capsys, damage):
    raw = write_mnist(tmp_path, 64, 32) / "MNIST" / "raw"
    images, labels = raw / FILES["train"][0], raw / FILES["train"][1]
    if damage == "truncated-images":
        images.write_bytes(images.read_bytes()[:5000])
    elif damage == "bad-magic":
        images.write_bytes(b"\x00\x00\x00\x00" + images.read_bytes()[4:])
    else:
        labels.write_bytes(labels.read_bytes()[:40])
    rc = train_offline(tmp_path)
    err = capsys.readouterr().err
    assert rc == 1, f"corrupt data ({damage}) was not refused"
    assert str(raw / FILES["train"][0]) in err and ("corrupt" in err or "truncated" in err), err
    assert "Traceback" not in err


def test_gzipped_files_are_accepted(tmp_path):
    import gzip

    raw = write_mnist(tmp_path, 64, 32) / "MNIST" / "raw"
    for names in FILES.values():
        for name in names:
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
            (raw / name).unlink()
    from experiment.data import load_mnist

    assert len(load_mnist(tmp_path, True, download=False)) == 64


def test_config_file_sets_values_and_flags_override_it(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("batchSize: 32\nepochs: 7\nlr: 0.02\n")
    args = cli.build_parser().parse_args(["train", "--config", str(path), "--epochs", "3"])
    resolved = cli.resolve_config(args)
    assert (resolved.batch_size, resolved.epochs, resolved.lr) == (32, 3, 0.02)


def test_bad_config_value_names_key_and_value(tmp_path, capsys):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"batchSize": 0}))
    assert cli.main(["train", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "batchSize = 0" in err and str(path) in err, err


def test_help_explains_every_option():
    for command in ("train", "evaluate", "predict", "all"):
        parser = cli.build_parser()
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            assert action.help, f"{command} {action.option_strings or action.dest} has no help text"


def test_all_trains_then_benchmarks_both_pipelines_into_one_run_folder(tiny, tmp_path):
    out = tmp_path / "all"
    proc = run_cli("all", "--quick", "--data-dir", str(tiny), "--output-dir", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "metrics.json").is_file() and (out / "mnist_cnn.pt").is_file(), "all must train first"
    bench = json.loads((out / "benchmark.json").read_text())
    throughput = bench["throughput"]
    assert throughput["status"] == "ok", f"the training-throughput section did not run: {throughput['reason']}"
    measured = throughput["devices"]["cpu"]
    assert measured["settings"]["data_dir"] == str(tiny), "the benchmark must use the run's own data"
    for pipeline in ("torchvision", "tensor"):
        assert measured["median"][pipeline]["train_images_per_s"] > 0, f"no {pipeline} train throughput"


def test_benchmark_help_explains_the_benchmarks_own_options():
    proc = run_cli("benchmark", "--help")
    assert proc.returncode == 0 and "--sizes" in proc.stdout and "--dtypes" in proc.stdout, proc.stdout


def test_throughput_compares_the_pipelines(tiny):
    from experiment.throughput import format_table, measure_pipelines

    result = measure_pipelines(tiny, rounds=1, train_batches=3, eval_batches=1, test_batch_size=100)
    for name in ("torchvision", "tensor"):
        assert len(result["per_round"][name]["train_images_per_s"]) == 1
        assert result["median"][name]["train_images_per_s"] > 0
    ratio = result["median"]["tensor"]["train_images_per_s"] / result["median"]["torchvision"]["train_images_per_s"]
    assert result["ratio"]["train"] == pytest.approx(ratio)
    assert len(result["ceiling"]["per_round"]["train_images_per_s"]) == 1, "the resident-batch ceiling was not run"
    assert "ceiling (one resident batch" in format_table(result)


def test_one_and_two_process_runs_agree_within_one_point(tmp_path):
    """torchrun with 2 gloo processes: sharded data, rank 0 writes, world_size recorded, same accuracy."""
    data = write_mnist(tmp_path / "data", n_train=1280, n_test=400)
    common = [
        "train",
        "--data-dir",
        str(data),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--lr",
        "0.05",
        "--no-progress",
        "--no-download",
    ]
    single = run_cli(*common, "--output-dir", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "experiment",
            *common,
            "--output-dir",
            str(tmp_path / "two"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 1.0, (one["test_accuracy"], two["test_accuracy"])
