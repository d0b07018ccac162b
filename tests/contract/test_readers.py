"""The reader contract, checked on every reader registered in the ``evalkit.readers`` entry points.

Each built-in reader is shown the same 12 shared photos in its own layout and must return the same samples
(a 200-class set: those of its classes).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from evalkit import dataset
from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, DatasetOptions, load, plugins
from evalkit.readers._common import official_wnids

from .test_runtimes import HEAVY, python

READERS = sorted(plugins(GROUPS["reader"]))


def photos(sample_root: Path, wnids: frozenset[str] | None = None) -> list[Path]:
    """The first 12 shared photos (of the classes ``wnids``, where given)."""
    return [p for p in sorted(sample_root.glob("*/*.JPEG")) if wnids is None or p.parent.name in wnids][:12]


def imagefolder_layout(sample_root: Path, tmp_path: Path) -> dict:
    return {"root": str(sample_root)}


def linked(images: list[Path], root: Path, name) -> dict:
    """The photos under other folder names (symlinks)."""
    for p in images:
        (root / name(p.parent.name)).mkdir(parents=True, exist_ok=True)
        (root / name(p.parent.name) / p.name).symlink_to(p)
    return {"root": str(root)}


def imagenetv2_layout(sample_root: Path, tmp_path: Path) -> dict:
    return linked(photos(sample_root), tmp_path / "v2", lambda wnid: str(imagenet1k().index[wnid]))


def tar_layout(sample_root: Path, tmp_path: Path) -> dict:
    """Two webdataset shards: <wnid>/<stem>.jpg + .cls members."""
    import io
    import tarfile

    images = photos(sample_root)
    for k in range(2):
        with tarfile.open(tmp_path / f"shard-{k:06d}.tar", "w") as tar:
            for p in images[k::2]:
                label = str(imagenet1k().index[p.parent.name]).encode()
                for name, data in ((f"{p.parent.name}/{p.stem}.jpg", p.read_bytes()), (f"{p.parent.name}/{p.stem}.cls", label)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return {"shards": str(tmp_path / "shard-{000000..000001}.tar")}


def subset_layout(name: str):
    def layout(sample_root: Path, tmp_path: Path) -> dict:
        return linked(photos(sample_root, official_wnids(name)), tmp_path / name, lambda wnid: wnid)
    return layout


def labelfile_layout(sample_root: Path, tmp_path: Path) -> dict:
    """A flat folder and Caffe-style lines with class indices."""
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for p in photos(sample_root):
        shutil.copy(p, flat / p.name)
        lines.append(f"{p.name} {imagenet1k().index[p.parent.name]}\n")
    (tmp_path / "val.txt").write_text("".join(lines))
    return {"root": str(flat), "labels": str(tmp_path / "val.txt")}


def files_layout(sample_root: Path, tmp_path: Path) -> dict:
    return {"files": [f"{p} {p.parent.name}" for p in photos(sample_root)]}


#: reader -> its dataset keys for the shared photos; a reader from another distribution brings its own test
LAYOUTS = {"imagefolder": imagefolder_layout, "labelfile": labelfile_layout, "files": files_layout,
           "imagenetv2": imagenetv2_layout, "imagenet_a": subset_layout("imagenet_a"),
           "imagenet_r": subset_layout("imagenet_r"), "tar": tar_layout}


def test_the_builtins_are_registered():
    assert set(LAYOUTS) <= set(READERS)


@pytest.mark.parametrize("name", READERS)
def test_options_extend_the_common_dataset_keys_and_default_to_the_layout(name):
    module = load(GROUPS["reader"], name)
    assert issubclass(module.Options, DatasetOptions) and dataclasses.is_dataclass(module.Options)
    options = module.Options()
    assert options.layout == name and options.name == name
    assert callable(module.read)


@pytest.mark.parametrize("name", READERS)
def test_module_imports_lazily_and_its_schema_is_registered(name):
    out = python(f"""
        import sys
        from evalkit.contract import GROUPS, load
        load(GROUPS["reader"], {name!r}).Options()
        from evalkit.config import register
        from hydra.core.config_store import ConfigStore
        register()
        assert "{name}_schema.yaml" in ConfigStore.instance().list("dataset")
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", READERS)
def test_every_layout_of_the_same_photos_gives_the_same_samples(name, sample_root, tmp_path):
    if name not in LAYOUTS:
        pytest.skip(f"reader {name} comes from another distribution; its own tests lay out its data")
    keys = LAYOUTS[name](sample_root, tmp_path)
    samples = dataset.load(load(GROUPS["reader"], name).Options(limit=12, **keys))
    subset = official_wnids(name) if name in ("imagenet_a", "imagenet_r") else None
    expected = [(p.stem, imagenet1k().index[p.parent.name]) for p in photos(sample_root, subset)]
    assert [(s.id, s.label) for s in samples] == expected
    assert all(s.read() == p.read_bytes() for s, p in zip(samples, sorted(photos(sample_root, subset), key=lambda p: p.stem)))
