"""Policies for `python -m experiment benchmark`: honest timings, stated skips, complete and valid outputs.

No assertion depends on how fast this machine is: timings are only checked for sanity (positive, median >= min).
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from experiment.benchmark import cli, pipelines
from experiment.benchmark.matmul import summarize, time_matmul
from experiment.benchmark.peaks import cpu_peak_estimate, gpu_peak, percent_of_peak

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_measure_pipelines(data_dir, *, device="cpu", batch_size=64, test_batch_size=1000, rounds=3, **_kw):
    """Stands in for experiment.throughput.measure_pipelines with fixed, plausible figures."""
    per_round = {
        "torchvision": {"train_images_per_s": [1000.0] * rounds, "eval_images_per_s": [4000.0] * rounds},
        "tensor": {"train_images_per_s": [3000.0] * rounds, "eval_images_per_s": [20000.0] * rounds},
    }
    median = {p: {k: v[0] for k, v in m.items()} for p, m in per_round.items()}
    return {
        "device": device,
        "rounds": rounds,
        "batch_size": batch_size,
        "per_round": per_round,
        "median": median,
        "ratio": {"train": 3.0, "eval": 5.0},
    }


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run with the fake throughput function: (benchmark.json as dict, stdout, output dir, rc)."""
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.setattr(cli, "gpu_unavailable_reason", lambda: "no CUDA device is visible (test)")
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli.main(["--quick", "--quiet", "--output-dir", str(out)], measure_pipelines=fake_measure_pipelines)
    finally:
        mp.undo()
    return json.loads((out / "benchmark.json").read_text()), buf.getvalue(), out, rc


def test_quick_run_succeeds_and_writes_json_with_config_and_machine_facts(quick_run):
    result, _, _, rc = quick_run
    assert rc == 0, "a quick run with every section measured or skipped for a stated reason must exit 0"
    assert result["config"]["quick"] is True and result["config"]["sizes"] == [128, 256]
    for fact in ("cpu_model", "cpu_logical", "torch", "torch_cuda_build", "torch_threads", "python", "gpu"):
        assert fact in result["machine"], f"machine facts lack {fact!r}"
    assert result["matmul"]["cpu_threads"] >= 1
    assert "hostname" not in json.dumps(result).lower(), "machine facts must not carry the hostname"


def test_every_matmul_case_keeps_raw_timings_and_sane_summaries(quick_run):
    cases = [c for c in quick_run[0]["matmul"]["cases"] if c["status"] == "ok"]
    assert {c["n"] for c in cases if c["device"] == "cpu"} == {128, 256}, "CPU fp32 must be measured at every size"
    for c in cases:
        where = f"{c['device']} {c['dtype']} n={c['n']}"
        assert len(c["times_s"]) == c["repeats_done"] >= 1, f"{where}: raw timings missing"
        assert all(t > 0 for t in c["times_s"]), f"{where}: a timing is not positive"
        assert c["median_s"] >= c["min_s"] > 0, f"{where}: median below min"
        assert c["gflops_median"] > 0 and c["gflops_best"] >= c["gflops_median"], f"{where}: GFLOP/s not sane"
        assert c["spread_pct"] >= 0, f"{where}: spread not reported"
        assert c["warmup"]["kind"], f"{where}: warm-up not recorded"


def test_gpu_side_is_reported_skipped_with_its_reason(quick_run):
    result, stdout, _, _ = quick_run
    assert result["matmul"]["gpu"] == {"status": "skipped", "reason": "no CUDA device is visible (test)"}
    assert "GPU side skipped: no CUDA device is visible (test)" in stdout
    assert not [c for c in result["matmul"]["cases"] if c["device"] == "cuda"], "no GPU case without a GPU"


def test_gpu_status_on_this_machine_matches_what_torch_sees(tmp_path, capsys):
    import torch

    rc = cli.main(["--quiet", "--sizes", "64", "--repeats", "1", "--skip-throughput", "--output-dir", str(tmp_path)])
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert rc == 0
    if torch.cuda.is_available():
        assert result["matmul"]["gpu"]["status"] == "measured"
    else:
        assert result["matmul"]["gpu"]["status"] == "skipped"
        assert "GPU side skipped: no CUDA device is visible" in capsys.readouterr().out


def test_chart_is_a_real_png(quick_run):
    png = quick_run[2] / "benchmark.png"
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "benchmark.png is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 200, f"chart is only {width}x{height}"
    assert len(data) > 10_000, f"chart is only {len(data)} bytes: nothing drawn?"


def test_outputs_are_written_atomically_without_leftovers(quick_run):
    names = sorted(p.name for p in quick_run[2].iterdir())
    assert names == ["benchmark.json", "benchmark.png"], f"unexpected files in the output dir: {names}"


def test_throughput_section_renders_the_injected_measurements(quick_run):
    result, stdout, _, _ = quick_run
    tp = result["throughput"]
    assert tp["status"] == "ok"
    cpu = tp["devices"]["cpu"]
    assert cpu["median"]["tensor"]["train_images_per_s"] == 3000.0
    assert cpu["per_round"]["torchvision"]["eval_images_per_s"] == [4000.0], "--quick must ask for one round"
    assert "tensor/torchvision" in stdout and "3.00" in stdout and "5.00" in stdout, "ratio row missing from table"


def test_throughput_is_skipped_with_the_import_error_when_unavailable(tmp_path, monkeypatch, capsys):
    def missing():
        raise ImportError("No module named 'experiment.throughput'")

    monkeypatch.setattr(pipelines, "_load_measure_pipelines", missing)
    rc = cli.main(["--quiet", "--sizes", "64", "--repeats", "1", "--device", "cpu", "--output-dir", str(tmp_path)])
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert rc == 0, "a stated skip is not a failure"
    assert result["throughput"]["status"] == "skipped"
    assert "ImportError" in result["throughput"]["reason"]
    assert "skipped: experiment.throughput.measure_pipelines is not available" in capsys.readouterr().out
    assert (tmp_path / "benchmark.png").read_bytes()[:8] == PNG_SIGNATURE


def test_a_throughput_failure_keeps_the_matmul_numbers_and_exits_1(tmp_path):
    def broken(*_a, **_kw):
        raise FileNotFoundError("MNIST not found in data/")

    rc = cli.main(
        ["--quiet", "--sizes", "64", "--repeats", "1", "--device", "cpu", "--output-dir", str(tmp_path)],
        measure_pipelines=broken,
    )
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert rc == 1
    assert result["throughput"]["devices"]["cpu"] == {
        "status": "failed",
        "error": "FileNotFoundError: MNIST not found in data/",
    }
    assert result["matmul"]["cases"][0]["status"] == "ok"


def test_a_malformed_throughput_answer_is_refused_naming_the_field():
    def malformed(*_a, **kw):
        answer = fake_measure_pipelines(None, **kw)
        answer["median"]["tensor"]["eval_images_per_s"] = 0
        return answer

    section = pipelines.run_throughput(
        ["cpu"], data_dir=None, batch_size=64, test_batch_size=100, rounds=1, train_batches=1, eval_batches=1, seed=1,
        measure_pipelines=malformed,
    )  # fmt: skip
    assert section["status"] == "failed"
    assert "median.tensor.eval_images_per_s=0" in section["devices"]["cpu"]["error"]


def test_percent_of_peak_and_speedup_follow_from_the_timings():
    cases = [
        {"status": "ok", "device": "cpu", "dtype": "fp32", "n": 1000, **summarize([0.2, 0.3, 0.25], 1000)},
        {"status": "ok", "device": "cuda", "dtype": "fp32", "n": 1000, **summarize([0.002, 0.004, 0.003], 1000)},
        {"status": "ok", "device": "cuda", "dtype": "bf16", "n": 1000, **summarize([0.001], 1000)},
    ]
    cli.add_derived(cases, cpu_peak_tflops=None, gpu_peak_entry=gpu_peak("Tesla T4"))
    cpu, gpu, bf16 = cases
    assert cpu["median_s"] == 0.25 and cpu["pct_of_peak"] is None, "CPU peak unknown -> no percentage"
    assert gpu["gflops_median"] == pytest.approx(2e9 / 0.003 / 1e9)  # 2n³/t
    assert gpu["spread_pct"] == pytest.approx(100 * 0.002 / 0.003)
    assert gpu["pct_of_peak"] == pytest.approx(100 * (2e9 / 0.003) / 8.1e12), "T4 fp32 peak is 8.1 TFLOP/s"
    assert gpu["speedup_vs_cpu_fp32"] == pytest.approx(0.25 / 0.003)
    assert bf16["pct_of_peak"] is None, "the T4 has no bf16 tensor cores: no made-up percentage"
    assert percent_of_peak(500.0, 1.0) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("name", "table_name"),
    [
        ("Tesla T4", "T4"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", None),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
    ],
)
def test_gpu_names_map_to_the_right_dense_peak(name, table_name):
    peak = gpu_peak(name)
    assert (peak.name if peak else None) == table_name, f"{name!r} matched {peak}"


def test_cpu_peak_is_estimated_only_from_facts_lscpu_gives():
    known = cpu_peak_estimate({"Flags": "sse avx avx2 fma", "CPU max MHz": "3000.0", "Core(s) per socket": "4",
                               "Socket(s)": "1"})  # fmt: skip
    assert known["tflops"] == pytest.approx(4 * 3.0e9 * 32 / 1e12)
    assert "upper-bound" in known["reason"]
    hidden = cpu_peak_estimate({"Flags": "avx2 fma avx512f", "Core(s) per socket": "2", "Socket(s)": "1"})
    assert hidden["tflops"] is None and "CPU max MHz" in hidden["reason"]


def test_a_slow_case_is_capped_but_never_below_two_runs_and_skips_an_unaffordable_warmup():
    case = time_matmul(
        32, device="cpu", dtype="fp32", repeats=5, max_case_seconds=1e-9, warmup_max_seconds=1.0,
        predicted_s=2.0, warmed_by="the n=16 case",
    )  # fmt: skip
    assert case["repeats_done"] == 2 and "exceed --max-case-seconds" in case["repeats_capped"]
    assert case["warmup"]["seconds"] is None and "the n=16 case" in case["warmup"]["kind"]


def test_help_explains_the_options():
    proc = subprocess.run(
        [sys.executable, "-m", "experiment.benchmark", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for words in ("--quick", "--dtypes", "--sizes", "--repeats", "warm-up", "benchmark.json", "GPU side is skipped"):
        assert words in proc.stdout, f"--help does not mention {words!r}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "0"], "--sizes '0': each size must be between 1 and 65536"),
        (["--sizes", "1k"], "--sizes '1k': expected integers"),
        (["--dtypes", "fp8"], "--dtypes 'fp8': unknown ['fp8']; choose from fp32,tf32,bf16,fp16"),
        (["--repeats", "0"], "'0' must be > 0"),
    ],
)
def test_bad_options_are_refused_with_the_value_and_the_fix(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tensor_core_modes_the_gpu_lacks_are_skipped_with_the_reason(monkeypatch):
    import torch

    from experiment.benchmark.matmul import unsupported_reason

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _i=0: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _i=0: "Tesla T4")
    assert unsupported_reason("cuda", "fp16") is None, "the T4 has fp16 tensor cores"
    assert unsupported_reason("cuda", "bf16") == "bf16 tensor cores need compute capability 8.0+; Tesla T4 is 7.5"
    assert "measured on GPU only" in unsupported_reason("cpu", "tf32")


def test_device_cuda_without_a_gpu_stops_with_the_reason_and_the_fix(monkeypatch):
    monkeypatch.setattr(cli, "gpu_unavailable_reason", lambda: "no CUDA device is visible (test)")
    with pytest.raises(SystemExit, match=r"--device cuda: no CUDA device is visible \(test\); use --device auto"):
        cli.run_benchmark(cli.BenchmarkSettings(device="cuda", sizes=(32,)), progress=lambda _m: None)
