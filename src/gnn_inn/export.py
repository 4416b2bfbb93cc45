"""Trained embeddings out of a model: ``.npy``, TSV and a TensorBoard projector config.

``gnn-inn export CHECKPOINT [--out DIR]`` writes to ``DIR``:

* ``entity_embeddings.npy`` / ``.tsv``: ``[N, d]`` float32, one row per entity id. For a
  message-passing encoder (R-GCN, CompGCN) these are the encoder's *output* embeddings in eval
  mode (what the decoder scores), for the lookup encoder its table;
* ``metadata.tsv``: the entity names, one per line in id order (no header: the projector's
  format for a single column);
* ``relation_embeddings.npy`` / ``.tsv`` and ``relation_metadata.tsv``: the encoder's relation
  output ``[2R, d_r]`` (CompGCN; rows ``R..2R-1`` are the inverse relations) or the decoder's
  own relation table ``[R or 2R, d_r]``; absent when relations live inside per-relation flows
  (no table to export);
* ``projector_config.pbtxt``: what ``tensorboard --logdir DIR`` reads to show both tables in
  its Projector tab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .decoders.base import Decoder
from .model import LinkPredictor


def embeddings(model: LinkPredictor) -> tuple[Tensor, Tensor | None]:
    """``(entity [N, d], relation [R', d_r] | None)`` of ``model`` in eval mode, on CPU.

    The relation rows are the encoder's relation output when it has one (``R' = 2R``), else the
    decoder's own relation table (``R' = R``, or ``2R`` for reciprocal decoders), else ``None``.
    The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ent, rel = model.encode()
            if rel is None and isinstance(model.decoder, Decoder) and \
                    model.decoder.relation is not None:
                rel = model.decoder.relation
            ent = ent.detach().float().cpu().clone()
            rel = None if rel is None else rel.detach().float().cpu().clone()
    finally:
        model.train(was_training)
    return ent, rel


def relation_row_names(relation_names: list[str], rows: int) -> list[str]:
    """Names of ``rows`` relation rows: the names, then ``"<name> (inverse)"`` for ``2R``."""
    r = len(relation_names)
    if rows == r:
        return list(relation_names)
    if rows == 2 * r:
        return [*relation_names, *(f"{n} (inverse)" for n in relation_names)]
    return [f"relation_{i}" for i in range(rows)]


def _clean(name: str) -> str:
    """A name on one TSV cell: tabs and line breaks become spaces."""
    return " ".join(str(name).replace("\t", " ").splitlines()) or "<empty>"


def _write_table(out: Path, stem: str, table: Tensor, names: list[str], metadata: str
                 ) -> dict[str, Any]:
    array = table.numpy().astype(np.float32, copy=False)
    np.save(out / f"{stem}.npy", array)
    np.savetxt(out / f"{stem}.tsv", array, delimiter="\t", fmt="%.8g")
    (out / metadata).write_text("".join(_clean(n) + "\n" for n in names), encoding="utf-8")
    return {"npy": f"{stem}.npy", "tsv": f"{stem}.tsv", "metadata": metadata,
            "shape": list(array.shape)}


def export_embeddings(model: LinkPredictor, entity_names: list[str],
                      relation_names: list[str], out_dir: str | Path) -> dict[str, Any]:
    """Write the files listed in the module docstring to ``out_dir``; returns a summary
    ``{"out": ..., "entities": {...}, "relations": {...} | None}``.

    Args:
        model: the trained link predictor (any encoder / decoder).
        entity_names: ``N`` names in id order.
        relation_names: ``R`` forward relation names in id order.
        out_dir: created if missing; existing files of the same names are replaced.
    """
    ent, rel = embeddings(model)
    if ent.shape[0] != len(entity_names):
        raise ValueError(f"the model has {ent.shape[0]} entity rows, the vocabulary "
                         f"{len(entity_names)} names")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(out)}
    summary["entities"] = _write_table(out, "entity_embeddings", ent, entity_names,
                                       "metadata.tsv")
    tables = [("entity", summary["entities"])]
    summary["relations"] = None
    if rel is not None:
        names = relation_row_names(relation_names, rel.shape[0])
        summary["relations"] = _write_table(out, "relation_embeddings", rel, names,
                                            "relation_metadata.tsv")
        tables.append(("relation", summary["relations"]))
    (out / "projector_config.pbtxt").write_text("".join(
        f"embeddings {{\n  tensor_name: {json.dumps(name)}\n"
        f"  tensor_path: {json.dumps(t['tsv'])}\n"
        f"  metadata_path: {json.dumps(t['metadata'])}\n}}\n" for name, t in tables),
        encoding="utf-8")
    summary["projector_config"] = "projector_config.pbtxt"
    return summary


__all__ = ["embeddings", "export_embeddings", "relation_row_names"]
