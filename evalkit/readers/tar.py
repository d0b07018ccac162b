"""Webdataset-style tar shards: ``<key>.jpg`` beside ``<key>.cls`` (class index) or ``<key>.json``.

Images are read in place: each sample is its member's offset and size inside the uncompressed shard, so
the shards need no unpacking and the decode workers share them like files. Only the headers and the
label members are read here; a shard that is cut short or damaged is refused rather than read in part.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample
from evalkit.errors import UserError


@dataclass
class Options(DatasetOptions):
    layout: str = "tar"
    #: the shards: a path with webdataset brace ranges ``{000000..000063}`` or lists ``{a,b}``, or a glob ``*``
    shards: Optional[str] = None


IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: the first bytes of compressed files, which cannot be read in place
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
EXAMPLE = "'dataset.shards=\"/data/imagenet-val-{000000..000063}.tar\"'"
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
#: a tar ends with two zero blocks of 512 bytes (then zero padding)
_END_OF_ARCHIVE = 1024


def expand(pattern: str) -> list[str]:
    """The paths a pattern names, in order: ``{000..063}`` counts with the zero padding of its start,
    ``{a,b}`` lists; several braces multiply."""
    brace = _BRACE.search(pattern)
    if brace is None:
        return [pattern]
    numbers = _RANGE.fullmatch(brace.group(1))
    if numbers:
        lo, hi = numbers.groups()
        choices = [str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1)]
    else:
        choices = brace.group(1).split(",")
    head, tail = pattern[:brace.start()], pattern[brace.end():]
    return [path for choice in choices for path in expand(head + choice + tail)]


def shard_files(pattern: str) -> list[Path]:
    """The shards a pattern names; every one of them must exist (a missing shard would drop its images)."""
    paths = expand(os.path.expanduser(pattern))
    found = [Path(p) for path in paths for p in (sorted(glob.glob(path)) if _is_glob(path) else [path])
             if os.path.isfile(p)]
    if not found:
        raise UserError(f"dataset.shards={pattern} matches no file; give the shards' path, e.g. {EXAMPLE}")
    missing = [p for p in paths if not _is_glob(p) and not os.path.isfile(p)]
    if missing:
        raise UserError(f"{missing[0]}: no such shard ({len(missing)} of the {len(paths)} files "
                        f"dataset.shards={pattern} names are missing); restore them or fix the pattern")
    return found


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _label(shard: Path, member: str, text: bytes, count: int) -> int:
    """The class index a ``.cls`` (the index as text) or ``.json`` (``label`` or ``cls``) member holds."""
    fix = ".cls holds the class index as text, .json an object with \"label\" or \"cls\""
    try:
        value = json.loads(text) if member.lower().endswith(".json") else int(text.decode().strip())
        if isinstance(value, dict):
            value = value["label"] if "label" in value else value["cls"]
    except (UnicodeDecodeError, ValueError, KeyError) as e:
        shown = text[:80].decode(errors="replace")
        raise UserError(f"{shard}: member {member}: cannot read a label from {shown!r}: {fix}") from e
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{shard}: member {member}: label {value!r} is not a class index: {fix}")
    if not 0 <= value < count:
        raise UserError(f"{shard}: member {member}: label {value} is out of range 0..{count - 1} "
                        "(labels are 0-based sorted-wnid indices)")
    return value


def _compression(shard: Path) -> Optional[str]:
    """The compression a shard that tarfile cannot read shows in its first bytes, if any."""
    with open(shard, "rb") as f:
        magic = f.read(6)
    return next((kind for m, kind in COMPRESSED.items() if magic.startswith(m)), None)


def _ends_cleanly(shard: Path, end: int) -> bool:
    """Whether only zeros follow the last header tarfile read, two blocks at least: the end-of-archive marker.

    Anything else is a header tarfile could not read (a damaged one, or a second archive appended).
    """
    zeros = 0
    with open(shard, "rb") as f:
        f.seek(end)
        for block in iter(lambda: f.read(1 << 16), b""):
            if block.strip(b"\0"):
                return False
            zeros += len(block)
    return zeros >= _END_OF_ARCHIVE


def _members(shard: Path) -> tuple[dict[str, dict[str, tarfile.TarInfo]], dict[str, bytes]]:
    """The shard's files grouped by key, then by extension (lower case), and the label members' bytes.

    A key is the member path up to the first dot of its base name (webdataset's convention). A shard
    cut short or damaged (tarfile's ReadError, or no end-of-archive blocks: tarfile stops quietly at a
    missing or damaged header after the first) is refused, naming the last member read.
    """
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    labels: dict[str, bytes] = {}
    last = "at its start"
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for m in tar:  # tarfile checks each member's data is all there before reading the next header
                last = f"in or after member {m.name}"
                folder, _, base = m.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not m.isfile() or not dot:
                    continue  # folders, links, names without an extension: no sample's field
                fields = groups.setdefault(f"{folder}/{stem}" if folder else stem, {})
                ext = ext.lower()
                if ext in fields:
                    raise UserError(f"{shard}: members {fields[ext].name} and {m.name} have the same key and "
                                    "extension; each sample needs its own key: write the shard without the copy")
                fields[ext] = m
                if ext in ("cls", "json"):
                    labels[m.name] = tar.extractfile(m).read()
            end = tar.offset
        if not _ends_cleanly(shard, end):
            raise tarfile.ReadError("no clean end of archive after it")
    except tarfile.ReadError as e:
        kind = _compression(shard)
        if kind:
            raise UserError(f"{shard}: is {kind}-compressed; images are read in place from uncompressed shards: "
                            "decompress it (e.g. gunzip) and point dataset.shards at the .tar files") from e
        raise UserError(f"{shard}: the archive is cut short or damaged {last} ({e}); write the shard again") from e
    except OSError as e:
        raise UserError(f"cannot read {shard}: {e.strerror or e}") from e
    return groups, labels


def read(options: Options, classes: Classes) -> list[Sample]:
    if not options.shards:
        raise UserError(f"dataset {options.name} needs dataset.shards=PATTERN, e.g. {EXAMPLE}")
    samples: list[Sample] = []
    seen: dict[str, str] = {}  # id -> where, for duplicates across shards
    for shard in shard_files(options.shards):
        groups, labels = _members(shard)
        for key, fields in groups.items():
            images = [fields[e] for e in IMAGE_EXTENSIONS if e in fields]
            label_member = fields.get("cls") or fields.get("json")
            if not images and not label_member:
                continue  # another kind of data (metadata, captions): not a sample
            if not images:
                raise UserError(f"{shard}: member {label_member.name} labels key {key}, which has no image "
                                f"({', '.join('.' + e for e in IMAGE_EXTENSIONS)}); add the image or remove the label")
            if len(images) > 1:
                raise UserError(f"{shard}: members {images[0].name} and {images[1].name} are two images of key {key}; "
                                "keep one image per key")
            image = images[0]
            if label_member is None:
                raise UserError(f"{shard}: member {image.name} has no label: add {key}.cls (the class index as text) "
                                f"or {key}.json ({{\"label\": index}})")
            where = f"{shard} member {image.name}"
            sample_id = key.rpartition("/")[2]
            if sample_id in seen:
                raise UserError(f"two images share the id {sample_id!r}: {seen[sample_id]} and {where}; "
                                "ids are the keys' base names and must be unique")
            seen[sample_id] = where
            label = _label(shard, label_member.name, labels[label_member.name], len(classes))
            samples.append(Sample(sample_id, shard, label, offset=image.offset_data, size=image.size))
    return samples
