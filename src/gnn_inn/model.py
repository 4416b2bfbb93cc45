"""``LinkPredictor``: encoder + decoder, the only place they meet; built from specs
(:func:`build_model`) or from a config (:func:`model_from_config`, :func:`load_kg`).

A trainer from a config is :func:`gnn_inn.training.trainer_from_config`, a trained model from a
checkpoint :func:`gnn_inn.training.load_trained`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from .config import Config
from .data import load_dataset
from .decoders import DECODERS


class LinkPredictor(nn.Module):
    r"""Entity ids → encoder → (entity, relation) embeddings → decoder → scores.

    Args:
        encoder: any module with ``forward(graph: Data) -> (ent[N, d], rel[2R, d_r] | None)``
            (see :mod:`gnn_inn.encoders`).
        decoder: a :class:`~gnn_inn.decoders.Decoder`.
        graph: the message-passing graph (train edges only, inverse edges typed ``r + R``);
            stored as buffers so ``.to(device)`` moves it. ``None`` for encoders that ignore it.

    In eval mode the encoder output is computed once and cached (evaluation encodes once and
    reuses the embeddings for every query); :meth:`train` and :meth:`invalidate_cache` drop
    the cache — the trainer calls the latter after every optimiser step.
    """

    def __init__(self, *, encoder: nn.Module, decoder: nn.Module, graph: Data | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self._num_nodes = None
        if graph is not None:
            self.set_graph(graph)
        else:
            self.register_buffer(
                "edge_index", torch.empty(2, 0, dtype=torch.long), persistent=False
            )
            self.register_buffer("edge_type", torch.empty(0, dtype=torch.long), persistent=False)
        self._cache: tuple[Tensor, Tensor | None] | None = None

    # ------------------------------------------------------------------ graph
    def set_graph(self, graph: Data) -> None:
        """Replace the message-passing graph (``edge_index [2, E]``, ``edge_type [E]``)."""
        device = next(self.parameters(), torch.empty(0)).device
        ei = graph.edge_index.to(device)
        et = graph.edge_type.to(device)
        if "edge_index" in self._buffers:
            self.edge_index, self.edge_type = ei, et
        else:
            self.register_buffer("edge_index", ei, persistent=False)
            self.register_buffer("edge_type", et, persistent=False)
        self._num_nodes = int(graph.num_nodes) if graph.num_nodes is not None else None
        self.invalidate_cache()

    @property
    def graph(self) -> Data:
        return Data(edge_index=self.edge_index, edge_type=self.edge_type, num_nodes=self._num_nodes)

    # ------------------------------------------------------------------ encode
    def invalidate_cache(self) -> None:
        self._cache = None

    def train(self, mode: bool = True) -> LinkPredictor:
        self._cache = None
        return super().train(mode)

    def encode(self, graph: Data | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the encoder: ``(ent [N, d], rel [2R, d_r] | None)``; cached in eval mode."""
        if graph is not None:
            return self.encoder(graph)
        if not self.training and self._cache is not None:
            return self._cache
        out = self.encoder(self.graph)
        if not isinstance(out, tuple):
            out = (out, None)
        if not self.training:
            self._cache = (out[0].detach(), None if out[1] is None else out[1].detach())
            return self._cache
        return out

    # ------------------------------------------------------------------ score
    def score(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B]`` of triples."""
        ent, rel = self.encode()
        return self.decoder.score(ent, rel, h, r, t)

    def score_tails(self, h: Tensor, r: Tensor) -> Tensor:
        """Scores ``[B, N]`` of every entity as the tail of ``(h, r, ?)``."""
        ent, rel = self.encode()
        return self.decoder.score_tails(ent, rel, h, r)

    def score_heads(self, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B, N]`` of every entity as the head of ``(?, r, t)``."""
        ent, rel = self.encode()
        return self.decoder.score_heads(ent, rel, r, t)

    def score_candidates(
        self, h: Tensor, r: Tensor, t: Tensor, candidates: Tensor, direction: str = "tail"
    ) -> Tensor:
        """Scores ``[B, K]`` of ``candidates[B, K]`` replacing the tail or head."""
        ent, rel = self.encode()
        return self.decoder.score_candidates(ent, rel, h, r, t, candidates, direction)

    def num_parameters(self) -> int:
        """``sum(p.numel())`` over all parameters (encoder and decoder)."""
        return sum(p.numel() for p in self.parameters())


def build_model(
    *, num_entities: int, num_relations: int, dim: int, encoder: dict[str, Any],
    decoder: dict[str, Any], graph: Data | None = None,
) -> LinkPredictor:
    """Build a :class:`LinkPredictor` from ``{"name": ..., **kwargs}`` specs.

    When the encoder provides relation embeddings (e.g. CompGCN), the decoder is built with
    ``relation_source="encoder"`` unless the decoder spec says otherwise. Decoders whose
    constructor takes ``num_entities`` (e.g. ConvE's per-entity bias) get it.
    """
    from .decoders import build_decoder
    from .encoders import build_encoder

    enc_kwargs = dict(encoder)
    enc_name = enc_kwargs.pop("name", "none")
    enc = build_encoder(
        enc_name, num_entities=num_entities, num_relations=num_relations, dim=dim, **enc_kwargs
    )
    dec_kwargs = dict(decoder)
    dec_name = dec_kwargs.pop("name")
    if enc.provides_relations:
        dec_kwargs.setdefault("relation_source", "encoder")
    dec_kwargs.setdefault("num_entities", num_entities)
    dec = build_decoder(dec_name, num_relations=num_relations, dim=enc.dim, **dec_kwargs)
    return LinkPredictor(encoder=enc, decoder=dec, graph=graph)


# ------------------------------------------------------------------ from a config
def load_kg(config: Config, data_dir: str | None = None):
    """The :class:`~gnn_inn.data.KnowledgeGraph` named by ``config.dataset``."""
    ds = config.dataset
    return load_dataset(ds.name, data_dir=data_dir or ds.data_dir, **ds.options)


def model_from_config(config: Config, kg) -> LinkPredictor:
    """Build the model of ``config.model`` for ``kg`` (message graph = train edges only)."""
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
