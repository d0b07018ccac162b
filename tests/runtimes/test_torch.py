"""PyTorch eager, the framework the weights came from, against ONNX Runtime on the shared images; and on a GPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from evalkit.errors import UserError

from ..conftest import run_cli, run_in_process  # noqa: TID252

torch = pytest.importorskip("torch", reason="runtime=torch needs evalkit[torch]")

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cpu_run(sample_root, tmp_path_factory):
    """(run.json, predictions) of runtime=torch on the CPU, fp32, on the 200 shared images."""
    return run_in_process(tmp_path_factory.mktemp("torch-cpu"), sample_root, ["runtime=torch"])


def by_id(predictions, ids=None):
    top1 = predictions.set_index("id")["pred1"]
    return top1 if ids is None else top1.loc[ids]


def test_torch_and_ort_agree_image_by_image(cpu_run, ort_run):
    run, predictions = cpu_run
    ort, ort_predictions, _ = ort_run
    assert (predictions["pred1"] == ort_predictions["pred1"]).mean() >= 0.995
    assert run["metrics"]["top1"] == ort["metrics"]["top1"] and run["runtime"]["info"]["torch"]
    assert run["runtime"]["info"]["device"] == "cpu" and run["runtime"]["info"]["oom_retries"] == 0


def test_torch_needs_weights(tmp_path, sample_root):
    with pytest.raises(UserError, match="model.weights=PATH"):
        run_in_process(tmp_path, sample_root, ["runtime=torch", "model.weights=null"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_under_autocast_and_says_so(precision, ort_run, sample_root, tmp_path):
    run, predictions = run_in_process(tmp_path, sample_root, ["runtime=torch", f"precision={precision}"],
                                      ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=40"])
    _, fp32, _ = ort_run
    agree = (by_id(predictions) == by_id(fp32, predictions["id"])).mean()
    assert agree >= 0.95, agree
    assert run["runtime"]["info"]["executed_precision"] == f"{precision} (autocast, cpu)"
    assert "transform" not in run  # the framework runs its own mode; no ONNX is transformed


def test_int8_is_refused_naming_the_runtimes_that_run_it(tmp_path, sample_root):
    with pytest.raises(UserError, match="runtime=torch cannot run precision=int8; runtimes that can: .*ort"):
        run_in_process(tmp_path, sample_root, ["runtime=torch", "precision=int8"])


def test_channels_last_gives_the_same_predictions(cpu_run, sample_root, tmp_path):
    run, predictions = run_in_process(tmp_path, sample_root, ["runtime=torch", "runtime.channels_last=true"],
                                      ["dataset=imagefolder", f"dataset.root={sample_root}", "dataset.limit=40"])
    assert len(predictions) == 40 and run["runtime"]["info"]["channels_last"] is True
    assert (by_id(predictions) == by_id(cpu_run[1], predictions["id"])).all()


# --- the device option without a GPU

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_one_clear_error(sample_root, tmp_path):
    results = tmp_path / "results"
    out = run_cli("runtime=torch", "runtime.device=cuda", "dataset=imagefolder", f"dataset.root={sample_root}",
                  f"results.dir={results}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "CUDA GPU" in out.stderr and "use runtime.device=cpu" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not results.exists()


def test_an_unknown_device_names_the_accepted_forms(sample_root, tmp_path):
    results = tmp_path / "results"
    out = run_cli("runtime=torch", "runtime.device=gpu", "dataset=imagefolder", f"dataset.root={sample_root}",
                  f"results.dir={results}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "runtime.device=gpu is not a device: use cpu, cuda or cuda:N" in out.stderr, out.stderr
    assert not results.exists()


# --- CUDA out of memory: the batch is retried in halves

class OutOfMemoryAbove(torch.nn.Module):
    """A real classifier (global average pool, then linear) that runs out of CUDA memory above ``most`` images."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most
        self.classify = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.most:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated: {len(x)} images > {self.most})")
        return self.classify(x)


def open_on(net: torch.nn.Module, tmp_path: Path):
    """runtime=torch opened by its own ``open``, with ``net`` as the model the context loads."""
    from evalkit import preprocess
    from evalkit.config import ModelConfig
    from evalkit.contract import GROUPS, load
    from evalkit.plugins import make_context
    from evalkit.preprocess.timm import Params

    module = load(GROUPS["runtime"], "torch")
    context = make_context(ModelConfig(name="m", arch="none", weights="not read.pth"), preprocess.build(Params()),
                           tmp_path)
    return module.open(module.Options(), dataclasses.replace(context, torch_model=lambda: net.eval()))


def test_out_of_memory_retries_the_batch_in_halves_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    net = OutOfMemoryAbove(4)
    runtime = open_on(net, tmp_path)
    batch = np.random.default_rng(0).standard_normal((10, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        whole = net.classify(torch.from_numpy(batch)).numpy()

    logits = runtime(batch)
    np.testing.assert_allclose(logits, whole, rtol=0, atol=1e-6)
    assert (logits.argmax(1) == whole.argmax(1)).all()
    assert net.sizes == [10, 5, 3, 3, 3, 1]  # 10 and 5 run out of memory; then pieces of 3
    assert runtime.info()["oom_retries"] == 2 and runtime.info()["oom_smallest_batch"] == 3

    net.sizes.clear()  # the next batch goes straight to pieces of 3
    np.testing.assert_allclose(runtime(batch), whole, rtol=0, atol=1e-6)
    assert net.sizes == [3, 3, 3, 1] and runtime.info()["oom_retries"] == 2


def test_out_of_memory_on_one_image_is_raised(tmp_path):
    net = OutOfMemoryAbove(0)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="simulated"):
        open_on(net, tmp_path)(np.zeros((2, 3, 16, 16), np.float32))
    assert net.sizes == [2, 1]


# --- on a CUDA GPU

@pytest.mark.gpu
@needs_gpu
def test_cuda_agrees_with_the_cpu_and_amp_stays_within_a_point(cpu_run, sample_root, tmp_path):
    run, predictions = run_in_process(tmp_path / "fp32", sample_root, ["runtime=torch", "runtime.device=cuda"])
    cpu, cpu_predictions = cpu_run
    # tolerance: at most 1 of the 200 images changes its top-1 (CPU and GPU fp32 kernels sum in other orders)
    assert (by_id(predictions) != by_id(cpu_predictions, predictions["id"])).sum() <= 1
    assert run["runtime"]["info"]["executed_precision"] == "fp32" and run["runtime"]["info"]["gpu"]
    amp, _ = run_in_process(tmp_path / "fp16", sample_root,
                            ["runtime=torch", "runtime.device=cuda", "precision=fp16", "runtime.channels_last=true"])
    assert abs(amp["metrics"]["top1"] - run["metrics"]["top1"]) <= 1.0
    assert amp["runtime"]["info"]["executed_precision"] == "fp16 (autocast, cuda)"


@pytest.mark.gpu
@needs_gpu
def test_batch_size_does_not_change_cuda_results(sample_root, tmp_path):
    runs = {}
    for size in (1, 7, 256):
        folder = tmp_path / str(size)
        _, predictions = run_in_process(folder, sample_root, ["runtime=torch", "runtime.device=cuda",
                                                              f"runtime.batch_size={size}", "results.save_logits=true"])
        runs[size] = predictions["pred1"].to_numpy(), np.load(next((folder / "results").glob("*/logits.npy")))
    for size in (7, 256):
        assert (runs[size][0] == runs[1][0]).all(), size
        np.testing.assert_allclose(runs[size][1], runs[1][1], rtol=0, atol=1e-3)


@pytest.mark.gpu
@needs_gpu
def test_gpu_decode_moves_top1_by_at_most_a_point_and_says_it_is_not_bit_exact(cpu_run, sample_root, tmp_path):
    run, _ = run_in_process(tmp_path, sample_root, ["runtime=torch", "runtime.device=cuda", "dataset.decode=gpu"])
    cpu, _ = cpu_run
    assert abs(run["metrics"]["top1"] - cpu["metrics"]["top1"]) <= 1.0
    assert run["recipe"]["bit_exact"] is False and run["recipe"]["fingerprint"] != cpu["recipe"]["fingerprint"]
    assert run["dataset"]["content_fingerprint"] == cpu["dataset"]["content_fingerprint"]  # the same files
