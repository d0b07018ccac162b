"""Tar shards (webdataset layout) read in place: the same predictions as the folder of the same photos, and every
bad shard refused with its shard and member named."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import dataset
from evalkit.classes import imagenet1k
from evalkit.config import compose
from evalkit.contract import GROUPS, Sample, load
from evalkit.errors import UserError
from evalkit.merge import merge
from evalkit.run import evaluate

from ..conftest import REPO, run_cli, tiny_onnx  # noqa: TID252

PREDS = [f"pred{k}" for k in range(1, 6)]


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def label_bytes(index: int, kind: str) -> bytes:
    return str(index).encode() if kind == "cls" else json.dumps({"label": index}).encode()


def write_shards(photos: list[Path], folder: Path, n: int, kind: str = "cls") -> str:
    """The photos shuffled into ``n`` shards as ``<wnid>/<stem>.jpg`` + ``.cls`` (or ``.json``); their brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    shuffled = list(photos)
    random.Random(0).shuffle(shuffled)
    for i in range(n):
        with tarfile.open(folder / f"val-{i:06d}.tar", "w") as tar:
            for photo in shuffled[i::n]:
                key = f"{photo.parent.name}/{photo.stem}"
                add(tar, f"{key}.jpg", photo.read_bytes())
                add(tar, f"{key}.{kind}", label_bytes(imagenet1k().index[photo.parent.name], kind))
    return f"{folder}/val-{{{0:06d}..{n - 1:06d}}}.tar"


def shard_of(members: dict[str, bytes], folder: Path, name: str = "bad.tar") -> str:
    """One shard of ``members`` (name -> bytes) in ``folder``; its path."""
    with tarfile.open(folder / name, "w") as tar:
        for member, data in members.items():
            add(tar, member, data)
    return str(folder / name)


def good(photo: Path) -> dict[str, bytes]:
    """A photo's image and label members."""
    key = f"{photo.parent.name}/{photo.stem}"
    return {f"{key}.jpg": photo.read_bytes(), f"{key}.cls": label_bytes(imagenet1k().index[photo.parent.name], "cls")}


def options(shards: str, **keys):
    return load(GROUPS["reader"], "tar").Options(shards=shards, **keys)


def run(lite0_onnx: Path, results: Path, shards: str, *extra: str) -> Path:
    return evaluate(compose([f"model.onnx={lite0_onnx}", "dataset=tar", f'dataset.shards="{shards}"',
                             f"results.dir={results}", "results.save_logits=true", "progress=false", *extra]))


@pytest.fixture(scope="module")
def photos(sample_root) -> list[Path]:
    return sorted(sample_root.glob("*/*.JPEG"))


@pytest.fixture(scope="module")
def shards(photos, tmp_path_factory) -> str:
    """The 200 shared photos in 8 shards."""
    return write_shards(photos, tmp_path_factory.mktemp("shards"), 8)


def test_brace_patterns_expand_in_order_with_zero_padding():
    from evalkit.readers.tar import expand

    assert expand("/d/x-{000008..000011}.tar") == [f"/d/x-{i:06d}.tar" for i in range(8, 12)]
    assert expand("{a,b}/{9..10}") == ["a/9", "a/10", "b/9", "b/10"]
    assert expand("/d/plain.tar") == ["/d/plain.tar"]


def test_members_are_read_in_place_with_the_folder_layout_s_ids_and_labels(shards, photos, sample_root):
    samples = dataset.load(options(shards))
    folder = dataset.load(load(GROUPS["reader"], "imagefolder").Options(root=str(sample_root)))
    assert [(s.id, s.label) for s in samples] == [(s.id, s.label) for s in folder]
    assert len({s.path for s in samples}) == 8
    assert all(s.read() == f.read() for s, f in zip(samples, folder))


def test_json_labels_through_a_glob(photos, tmp_path):
    write_shards(photos[:30], tmp_path, 3, kind="json")
    samples = dataset.load(options(str(tmp_path / "val-*.tar")))
    expected = sorted((p.stem, imagenet1k().index[p.parent.name]) for p in photos[:30])
    assert [(s.id, s.label) for s in samples] == expected


def test_the_tar_run_predicts_exactly_as_the_folder_run(ort_run, lite0_onnx, shards, tmp_path):
    folder_run, folder_predictions, folder_logits = ort_run
    run_dir = run(lite0_onnx, tmp_path, shards)
    tar_run = json.loads((run_dir / "run.json").read_text())
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert tar_run["metrics"] == folder_run["metrics"]
    columns = ["id", "label", *PREDS]
    assert predictions[columns].equals(folder_predictions[columns])
    assert np.array_equal(np.load(run_dir / "logits.npy"), folder_logits)
    assert tar_run["dataset"]["content_fingerprint"] == folder_run["dataset"]["content_fingerprint"]


def test_two_shard_runs_merge_to_the_whole_run(lite0_onnx, shards, tmp_path):
    whole = run(lite0_onnx, tmp_path / "whole", shards, "dataset.limit=40")
    parts = [run(lite0_onnx, tmp_path / "parts", shards, "dataset.limit=40", "dataset.num_shards=2",
                 f"dataset.shard={i}") for i in (1, 0)]
    merged = merge(parts, tmp_path / "parts", None)
    a, b = (json.loads((d / "run.json").read_text()) for d in (whole, merged))
    assert a["metrics"] == b["metrics"]
    assert pd.read_csv(whole / "predictions.csv").equals(pd.read_csv(merged / "predictions.csv"))


def test_a_killed_tar_run_resumes_to_the_folder_run_s_predictions(ort_run, lite0_onnx, shards, tmp_path):
    results = tmp_path / "results"
    args = [f"model.onnx={lite0_onnx}", "dataset=tar", f'dataset.shards="{shards}"', "dataset.limit=60",
            f"results.dir={results}", "progress=false", "runtime.batch_size=4", "runtime.intra_op_threads=1",
            "workers=1", "results.checkpoint_s=0", "cache.enabled=false"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "evalkit", *args], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not list(results.glob(".partial/*/part-*.npz")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended or made no checkpoint"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL, after the first checkpoint
        proc.wait(timeout=60)
    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert 0 < int(resumed.stdout.split("resuming: ")[1].split(" of ")[0]) < 60
    (run_json,) = results.glob("*/run.json")
    columns = ["id", "label", *PREDS]
    assert pd.read_csv(run_json.parent / "predictions.csv")[columns].equals(ort_run[1][columns].head(60))


def test_a_corrupt_image_member_counts_wrong_and_is_named(lite0_onnx, photos, tmp_path):
    kept = photos[:6]
    members = {name: data for photo in kept for name, data in good(photo).items()}
    members[f"{kept[2].parent.name}/{kept[2].stem}.jpg"] = b"\xff\xd8\xff" + bytes(64)  # a JPEG start, then nothing
    shard = shard_of(members, tmp_path)
    named = rf"{re.escape(shard)} \(member {kept[2].stem}\): cannot decode image.*dataset.bad_images=count_wrong"
    with pytest.raises(UserError, match=named):
        run(lite0_onnx, tmp_path / "failed", shard)
    run_dir = run(lite0_onnx, tmp_path / "r", shard, "dataset.bad_images=count_wrong")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["bad_images"]["count"] == 1 and kept[2].stem in record["bad_images"]["examples"]
    assert record["metrics"]["n"] == 6 and record["metrics"]["no_prediction"] == 1


def test_a_member_cut_short_after_listing_is_an_oserror_naming_archive_and_member(tmp_path):
    archive = tmp_path / "x.tar"
    archive.write_bytes(bytes(100))
    named = rf"{re.escape(str(archive))}: member k needs 50 bytes at byte 80, the archive has 20: it is truncated"
    with pytest.raises(OSError, match=named):
        Sample("k", archive, 0, offset=80, size=50).read()
    assert Sample("k", archive, 0, offset=10, size=5).read() == bytes(5)


def test_the_tensor_cache_tells_members_of_one_shard_apart(tmp_path):
    from evalkit import preprocess
    from evalkit.tensorcache import TensorCache

    recipe = preprocess.build(compose([]).preprocess)

    def key(sample: Sample) -> str:
        return TensorCache(tmp_path, recipe, [sample]).key

    shard = tmp_path / "s.tar"
    assert key(Sample("a", shard, 0, offset=512, size=9)) != key(Sample("a", shard, 0, offset=2048, size=9))
    assert key(Sample("a", shard, 0)) != key(Sample("a", shard, 0, offset=512, size=9))


def test_patterns_that_name_missing_shards_are_refused(shards, tmp_path):
    with pytest.raises(UserError, match=r"dataset.shards=/nowhere/x-\{0..3\}.tar matches no file"):
        dataset.load(options("/nowhere/x-{0..3}.tar"))
    longer = shards.replace("000007}", "000009}")
    with pytest.raises(UserError, match=r"val-000008.tar: no such shard \(2 of the 10 files"):
        dataset.load(options(longer))


def test_compressed_shards_are_refused(photos, tmp_path):
    plain = Path(shard_of(good(photos[0]), tmp_path))
    zipped = tmp_path / "bad.tar.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(UserError, match=rf"{re.escape(str(zipped))}: is gzip-compressed.*uncompressed shards"):
        dataset.load(options(str(zipped)))


@pytest.mark.parametrize("cut,member", [(700, "n01440764_tench.jpg"), (None, "n01440764_tench.cls")])
def test_truncated_shards_are_refused_naming_the_last_member(cut, member, photos, tmp_path):
    """Cut inside the image's data, or exactly after the label (the next header and the end blocks gone)."""
    shard = Path(shard_of({**good(photos[0]), **good(photos[1])}, tmp_path))
    data = shard.read_bytes()
    if cut is None:  # the first sample's members end on a block boundary: cut there
        with tarfile.open(shard) as tar:
            first_label = tar.getmembers()[1]
            cut = first_label.offset_data + -(-first_label.size // 512) * 512
    shard.write_bytes(data[:cut])
    named = rf"{re.escape(str(shard))}: the archive is cut short or damaged in or after member n01440764/{member}"
    with pytest.raises(UserError, match=named):
        dataset.load(options(str(shard)))


def test_corrupt_headers_are_refused(photos, tmp_path):
    shard = Path(shard_of(good(photos[0]), tmp_path))
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # the first header's name: its checksum no longer matches
    shard.write_bytes(bytes(data))
    named = rf"{re.escape(str(shard))}: the archive is cut short or damaged at its start \(bad checksum\)"
    with pytest.raises(UserError, match=named):
        dataset.load(options(str(shard)))


@pytest.mark.parametrize("members,message", [
    (lambda k, p: {f"{k}.jpg": p.read_bytes()},
     r"member n01440764/n01440764_tench.jpg has no label: add n01440764/n01440764_tench.cls"),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.cls": b"1000"},
     r"member n01440764/n01440764_tench.cls: label 1000 is out of range 0..999"),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.cls": b"tench"},
     r"member n01440764/n01440764_tench.cls: cannot read a label from 'tench'"),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.json": b'{"class": 0}'},
     r"member n01440764/n01440764_tench.json: cannot read a label.*\"label\" or \"cls\""),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.json": b'{"label": "0"}'},
     r"member n01440764/n01440764_tench.json: label '0' is not a class index"),
    (lambda k, p: {f"{k}.cls": b"0"},
     r"member n01440764/n01440764_tench.cls labels key n01440764/n01440764_tench, which has no image"),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.cls": b"0", f"{k}.JPG": p.read_bytes()},
     r"members n01440764/n01440764_tench.jpg and n01440764/n01440764_tench.JPG have the same key and extension"),
    (lambda k, p: {f"{k}.jpg": p.read_bytes(), f"{k}.cls": b"0", f"{k}.v2.cls": b"1"},
     r"members n01440764/n01440764_tench.cls and n01440764/n01440764_tench.v2.cls are two labels of key"),
])
def test_bad_members_are_refused_naming_shard_and_member(members, message, photos, tmp_path):
    photo = photos[0]
    shard = shard_of(members(f"{photo.parent.name}/{photo.stem}", photo), tmp_path)
    with pytest.raises(UserError, match=rf"{re.escape(shard)}: {message}"):
        dataset.load(options(shard))


def test_one_id_in_two_shards_is_refused_naming_both(photos, tmp_path):
    shard_of(good(photos[0]), tmp_path, "a.tar")
    shard_of(good(photos[0]), tmp_path, "b.tar")
    with pytest.raises(UserError, match=rf"id 'n01440764_tench': {re.escape(str(tmp_path))}/a.tar member "
                                        rf"n01440764/n01440764_tench.jpg and {re.escape(str(tmp_path))}/b.tar member"):
        dataset.load(options(f"{tmp_path}/{{a,b}}.tar"))


def test_an_unquoted_brace_override_exits_2_with_the_quoted_form(tmp_path):
    out = run_cli("dataset=tar", "dataset.shards=/data/x-{000000..000063}.tar", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert """'dataset.shards="/data/x-{000000..000063}.tar"'""" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_dotted_key_pairs_as_webdataset_pairs_it(photos, tmp_path):
    """webdataset's key is the name up to the first dot of its base name: ``img.v2.jpg`` + ``img.v2.cls`` are the
    fields ``v2.jpg`` and ``v2.cls`` of key ``img``, an image and its label (decoded by their last extension)."""
    photo = photos[0]
    key = f"{photo.parent.name}/{photo.stem}"
    shard = shard_of({f"{key}.v2.jpg": photo.read_bytes(), f"{key}.v2.cls": b"0", f"{key}.v2.txt": b"a caption"},
                     tmp_path)
    (sample,) = dataset.load(options(shard))
    assert (sample.id, sample.label) == (photo.stem, 0) and sample.read() == photo.read_bytes()


def test_members_that_pair_with_nothing_are_named_in_the_run_s_warnings_and_strict_refuses_them(photos, tmp_path):
    """macOS tar's ``._name.jpg`` (no key before the first dot) and a symbolic link: webdataset skips both."""
    members = {name: data for photo in photos[:3] for name, data in good(photo).items()}
    shard = shard_of(members, tmp_path)
    with tarfile.open(shard, "a") as tar:
        add(tar, "n01440764/._n01440764_tench.jpg", b"AppleDouble")
        link = tarfile.TarInfo("n01440764/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "n01440764_tench.jpg"
        tar.addfile(link)
    args = [f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "model.references=[]", "dataset=tar",
            f'dataset.shards="{shard}"', f"results.dir={tmp_path / 'r'}", "progress=false", "cache.enabled=false"]
    run_json = json.loads((evaluate(compose(args)) / "run.json").read_text())
    named = (f"2 files skipped, not scored: {shard} member n01440764/._n01440764_tench.jpg (no key before the first "
             f"dot of its name); {shard} member n01440764/link.jpg (a link, not a file)")
    assert run_json["metrics"]["n"] == 3 and named in run_json["warnings"]
    strict = run_cli(*args, "dataset.strict=true", cwd=tmp_path)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert f"{named}; dataset.strict=true" in strict.stderr


def test_a_key_with_a_newline_is_refused_naming_the_shard(photos, tmp_path):
    """A newline in an id would add a line to the Ascend .info list (and any list) evalkit writes."""
    shard = shard_of({"n01440764/a\nb.jpg": photos[0].read_bytes(), "n01440764/a\nb.cls": b"0"}, tmp_path)
    with pytest.raises(UserError, match=re.escape(f"{shard!r}: image id 'a\\nb' is empty or holds a control")):
        dataset.load(options(shard))
