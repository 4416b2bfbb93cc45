"""Named datasets: where they come from, how they are verified, where they are cached.

Resolution order for a registered name:

1. ``data_dir`` argument, then env ``GNN_INN_DATA``: ``<dir>/<name>/{train,valid,test}.txt``;
2. the cache (env ``GNN_INN_CACHE``, default ``~/.cache/gnn_inn``): ``<cache>/<name>/...``;
3. download from the canonical source, verify every file's sha256, store in the cache.

Local and cached files are verified against the same digests, so ids and counts are the same
whichever way a dataset arrives; a mismatch is an error naming the file, the expected and the
actual digest.

Any other name is a custom dataset: ``<data_dir>/<name>/`` (then ``$GNN_INN_DATA/<name>/``)
when that folder holds ``train.txt / valid.txt / test.txt``, else ``name`` read as a path to
such a folder. A custom folder is read as it is (no digests to check).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .graph import SPLITS, KnowledgeGraph
from .ogb import OGB_DATASETS, load_ogb
from .paths import cache_dir, data_roots
from .synthetic import make_synthetic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from.

    ``files`` maps ``train/valid/test`` to a URL; when ``archive`` is set, the three files are
    members ``members[split]`` of that archive instead. ``sha256`` holds the digest of each
    *extracted* split file (``None`` = not pinned yet: the digest is logged on download).
    """

    name: str
    citation: str
    files: dict[str, str] = field(default_factory=dict)
    archive: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str | None] = field(default_factory=dict)


_VILLMOW = "https://raw.githubusercontent.com/villmow/datasets_knowledge_embedding/master"

DATASETS: dict[str, DatasetSpec] = {
    "fb15k-237": DatasetSpec(
        name="fb15k-237",
        citation="Toutanova & Chen (2015), Observed versus latent features for KB completion",
        archive="https://download.microsoft.com/download/8/7/0/"
                "8700516A-AB3D-4850-B4BB-805C515AECE1/FB15K-237.2.zip",
        members={s: f"Release/{s}.txt" for s in SPLITS},
        sha256={
            "train": "6e4c2782169af21e9743f3b1d200886f5d595bf6bc504ec1351720949c5cdfae",
            "valid": "cf6309010852f6a8d47a45df830a426415d1ee6f7a3970a8376ff1fb81db4a5c",
            "test": "5711cf41623ceb4eacc50eb6108a3ca6565c7492e3caaf82a3e355cc660d1574",
        },
    ),
    "wn18rr": DatasetSpec(
        name="wn18rr",
        citation="Dettmers et al. (2018), Convolutional 2D knowledge graph embeddings",
        archive="https://github.com/TimDettmers/ConvE/raw/master/WN18RR.tar.gz",
        members={s: f"{s}.txt" for s in SPLITS},
        sha256={
            "train": "038612e783c215ee5f3ca9fbfca27b8d0739be1028fe4ee7c174aecf0b83d5df",
            "valid": "453ce7202afa58094a04d2b1560ee2b02660f1c260b32ce6651c8ccedd1028ab",
            "test": "0383bceaaa1096cf3c03ec021ed0048068e2355dbfc0239b292cefdac821cec5",
        },
    ),
    "umls": DatasetSpec(
        name="umls",
        citation="Kok & Domingos (2007); split of Dettmers et al. (2018)",
        files={s: f"{_VILLMOW}/umls/{s}.txt" for s in SPLITS},
        sha256={
            "train": "873ef4925516b83e7f6f8cc02b4be51d848828710a7f65a956f0ac4a9e452f35",
            "valid": "025c98f8a4891e2a6582ec5b40ee0d904031edad9c52554522f4b7904820c98e",
            "test": "a7eb529a3d2810fcc96341ccc97c625a5e202f8389673aa6bd317eeebbb79014",
        },
    ),
    "nations": DatasetSpec(
        name="nations",
        citation="Kok & Domingos (2007); split of Dettmers et al. (2018)",
        files={s: f"{_VILLMOW}/nations/{s}.txt" for s in SPLITS},
        sha256={
            "train": "0830fa9da8e5bba2ccdaa45b7bdc9130451ba66b09ff2708f35fccaf82473e57",
            "valid": "2b337a62e51a2f45c283eac98a70d21b7e0e102136be1539b2a52c652a7b0530",
            "test": "3971085165b47b6aeaec68058c6d8d98b3005e929db81268410b95ae4db770ab",
        },
    ),
    "kinship": DatasetSpec(
        name="kinship",
        citation="Kok & Domingos (2007); split of Dettmers et al. (2018)",
        files={s: f"{_VILLMOW}/kinship/{s}.txt" for s in SPLITS},
        sha256={s: None for s in SPLITS},  # no pinned copy yet: digest logged on download
    ),
}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(folder: Path, spec: DatasetSpec) -> None:
    """Check each split file of ``folder`` against the spec's digests."""
    for split in SPLITS:
        want = spec.sha256.get(split)
        if want is None:
            continue
        path = folder / f"{split}.txt"
        got = sha256_file(path)
        if got != want:
            raise ValueError(
                f"{path}: sha256 mismatch for {spec.name} {split} (expected {want}, got {got}); "
                "the file is not the one its authors distribute — replace it, or load the "
                "folder as a custom dataset by its path"
            )


def _fetch(url: str) -> bytes:
    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310 (fixed https URLs)
        return r.read()


def download(spec: DatasetSpec, target: Path) -> Path:
    """Download ``spec`` into ``target/<name>`` atomically (temp folder, verify, rename)."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=target))
    try:
        if spec.archive:
            blob = _fetch(spec.archive)
            if spec.archive.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(blob)) as z:
                    for split, member in spec.members.items():
                        (tmp / f"{split}.txt").write_bytes(z.read(member))
            else:
                with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tf:
                    names = {Path(m.name).as_posix().lstrip("./"): m for m in tf.getmembers()}
                    for split, member in spec.members.items():
                        f = tf.extractfile(names[member])
                        (tmp / f"{split}.txt").write_bytes(f.read())
        else:
            for split, url in spec.files.items():
                (tmp / f"{split}.txt").write_bytes(_fetch(url))
        verify(tmp, spec)
        for split in SPLITS:
            if spec.sha256.get(split) is None:
                log.warning("%s %s: no pinned digest; downloaded file sha256=%s", spec.name,
                            split, sha256_file(tmp / f"{split}.txt"))
        final = target / spec.name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _has_splits(folder: Path) -> bool:
    return all((folder / f"{s}.txt").is_file() for s in SPLITS)


def dataset_folder(name: str, data_dir: str | None = None, *, allow_download: bool = True
                   ) -> Path:
    """The verified local folder of the registered dataset ``name`` (downloading if needed)."""
    spec = DATASETS[name]
    for what, base in data_roots(data_dir):
        if _has_splits(base / name):
            folder = base / name
            verify(folder, spec)
            return folder
        log.warning("dataset %r: %s=%s holds no %s/{train,valid,test}.txt; looking further",
                    name, what, base, name)
    cached = cache_dir() / name
    if _has_splits(cached):
        verify(cached, spec)
        return cached
    looked = [f"{b}/{name}/" for b in (data_dir, os.environ.get("GNN_INN_DATA"), cache_dir())
              if b]
    where = "looked for its train/valid/test.txt in " + ", ".join(looked)
    if not allow_download:
        raise FileNotFoundError(f"dataset {name!r} not found locally ({where}) and "
                                "downloading is off")
    log.info("dataset %r: not found locally (%s); downloading", name, where)
    try:
        return download(spec, cache_dir())
    except OSError as e:  # URLError, timeouts, an unwritable cache
        raise FileNotFoundError(
            f"dataset {name!r}: not found locally ({where}), and the download failed "
            f"({getattr(e, 'reason', None) or e}); check --data-dir / GNN_INN_DATA, or put the "
            "files in one of those folders") from None


def load_dataset(name_or_path: str, *, data_dir: str | None = None, **options) -> KnowledgeGraph:
    """Load a registered dataset, the built-in ``synthetic`` suite, or a folder of TSV files.

    Args:
        name_or_path: ``fb15k-237``, ``wn18rr``, ``umls``, ``nations``, ``kinship``,
            ``synthetic``, ``ogbl-biokg``, ``ogbl-wikikg2``, or a path to a folder holding
            ``train.txt / valid.txt / test.txt``.
        data_dir: folder holding ``<name>/`` (default: env ``GNN_INN_DATA``); for OGB datasets
            the folder holding ogb's ``ogbl_biokg/`` / ``ogbl_wikikg2/``.
        options: keyword arguments of the generator (``synthetic``) or of
            :func:`gnn_inn.data.ogb.load_ogb` (OGB datasets, e.g. ``trust_pickle``).
    """
    key = name_or_path.lower()
    if key == "synthetic":
        return make_synthetic(**options)
    if key in OGB_DATASETS:
        return load_ogb(key, data_dir, **options)
    if options:
        raise ValueError(f"dataset {name_or_path!r} takes no options, got {sorted(options)}")
    if key in DATASETS:
        return KnowledgeGraph.from_directory(dataset_folder(key, data_dir), name=key)
    folder, looked = custom_folder(name_or_path, data_dir)
    if folder is not None:
        return KnowledgeGraph.from_directory(folder)
    raise ValueError(
        f"unknown dataset {name_or_path!r}: not a registered name "
        f"({', '.join([*DATASETS, 'synthetic', *OGB_DATASETS])}), and no folder with "
        f"train/valid/test.txt at {' or '.join(looked)}"
    )


def custom_folder(name: str, data_dir: str | None = None) -> tuple[Path | None, list[str]]:
    """The folder of the custom (unregistered) dataset ``name`` and the places looked at.

    ``<root>/<name>/`` for each root of :func:`~gnn_inn.data.paths.data_roots` (``data_dir``,
    then ``GNN_INN_DATA``) that holds ``train.txt / valid.txt / test.txt``, else ``name`` itself
    when it is a folder (a folder with missing split files is returned too, so that loading it
    names the missing files); ``None`` when neither exists.
    """
    looked = []
    for _, base in data_roots(data_dir):
        candidate = base / name
        if _has_splits(candidate):
            return candidate, looked
        looked.append(f"{candidate}/")
    path = Path(name)
    if path.is_dir():
        return path, looked
    looked.append(f"{path}/")
    return None, looked
