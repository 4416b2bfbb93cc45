"""Config → (knowledge graph, model, trainer), and checkpoint → trained model.

The glue the CLI and scripts share; Python users may call these or build objects directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .model import LinkPredictor, build_model

log = logging.getLogger(__name__)


def load_kg(config: Config, data_dir: str | None = None):
    """The :class:`~gnn_inn.data.KnowledgeGraph` named by ``config.dataset``."""
    from .data import load_dataset

    ds = config.dataset
    return load_dataset(ds.name, data_dir=data_dir or ds.data_dir, **ds.options)


def model_from_config(config: Config, kg) -> LinkPredictor:
    """Build the model of ``config.model`` for ``kg`` (message graph = train edges only)."""
    import inspect

    from .decoders import DECODERS

    torch.manual_seed(config.seed)
    m = config.model
    decoder = dict(m.decoder)
    cls = DECODERS.get(decoder.get("name"))
    if cls is not None:
        # decoders that choose per-relation structure from data (flow patterns='auto') get the
        # training triples and relation names; nothing else does
        params = inspect.signature(cls.__init__).parameters
        if "train_triples" in params:
            decoder.setdefault("train_triples", kg.train)
        if "relation_names" in params:
            decoder.setdefault("relation_names", kg.relation_names)
    return build_model(
        num_entities=kg.num_entities, num_relations=kg.num_relations, dim=m.dim,
        encoder=m.encoder, decoder=decoder, graph=kg.message_graph(),
    )


def trainer_from_config(config: Config, kg=None, *, data_dir: str | None = None,
                        out_dir: str | Path | None = None, quiet: bool = False):
    from .training import Trainer

    kg = kg if kg is not None else load_kg(config, data_dir)
    model = model_from_config(config, kg)
    return Trainer(model=model, kg=kg, config=config, out_dir=out_dir, quiet=quiet)


def load_trained(checkpoint: str | Path, *, data_dir: str | None = None,
                 map_location: str = "cpu", trusted: bool = False
                 ) -> tuple[LinkPredictor, Any, Config]:
    """Rebuild ``(model, kg, config)`` from a checkpoint; the vocabularies must match.

    ``trusted``: see :func:`~gnn_inn.training.checkpoint.load_checkpoint`. A warning names the
    split files that differ from those the checkpoint was trained with (when it recorded them).
    """
    from .data import check_vocab
    from .training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, map_location=map_location, trusted=trusted)
    config = Config.from_dict(ckpt["config"], source=str(checkpoint))
    kg = load_kg(config, data_dir)
    check_vocab(ckpt["vocab"], kg, source=str(checkpoint))
    saved, now = ckpt.get("data_fingerprint"), getattr(kg, "fingerprint", None)
    if saved and now:
        differ = sorted(s for s in set(saved) | set(now) if saved.get(s) != now.get(s))
        if differ:
            log.warning("%s: the dataset's %s file(s) differ from those the checkpoint was "
                        "trained with (sha256); results are not comparable with its run",
                        checkpoint, ", ".join(f"{s}.txt" for s in differ))
    model = model_from_config(config, kg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, kg, config
