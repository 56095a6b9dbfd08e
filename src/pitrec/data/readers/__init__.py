"""Readers, one per format, registered in ``READERS``; ``load_interactions`` picks one from the
config (or detects it from the path) and applies the configured k-core filtering."""

from __future__ import annotations

from pathlib import Path

from pitrec.data.errors import DataError
from pitrec.data.filtering import kcore
from pitrec.data.interactions import Interactions
from pitrec.data.readers import recbole, s3rec  # noqa: F401  (importing registers the readers)
from pitrec.data.readers.tabular import SUFFIXES, is_items_table
from pitrec.registry import READERS


def detect_format(path: Path) -> str:
    if path.is_dir():
        if s3rec.is_s3rec(path):
            return "s3rec"
        if any(path.glob("*.inter")):
            return "recbole"
        names = [p.name.lower() for p in path.iterdir() if p.is_file() and not is_items_table(p)]
        kinds = [fmt for fmt, suffixes in SUFFIXES.items() if any(n.endswith(suffixes) for n in names)]
        if len(kinds) > 1:
            raise DataError(path, "this folder holds both CSV and Parquet tables; set data.format to say which "
                                  "holds the interactions")
        if kinds:
            return kinds[0]
        raise DataError(path, "cannot tell the data format of this folder: expected sequences.txt[.gz] "
                              "(S3-Rec), *.inter (RecBole) or interactions .csv/.parquet; set data.format")
    name = path.name.lower()
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return "csv"
    if not path.exists():
        raise DataError(path, "no such file or folder")
    raise DataError(path, "cannot tell the data format from the name; set data.format")


def load_interactions(cfg) -> Interactions:
    """``cfg`` is the ``data`` config section."""
    if cfg.format == "synthetic" or (cfg.path is None and cfg.format in ("auto", "synthetic")):
        from pitrec.data.synthetic import generate

        data = generate(n_users=cfg.synthetic_users, n_items=cfg.synthetic_items,
                        n_clusters=cfg.synthetic_clusters, seed=cfg.synthetic_seed)
    else:
        if cfg.path is None:
            raise DataError(None, f"data.path is required for data.format={cfg.format}")
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise DataError(path, "no such file or folder")
        fmt = detect_format(path) if cfg.format == "auto" else cfg.format
        data = READERS.get(fmt)(path, cfg)
    return kcore(data, cfg.kcore_users, cfg.kcore_items)
