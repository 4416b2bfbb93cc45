"""The decoder interface: turn (entity embeddings, relation) into scores.

Every decoder in this package is written as *query map + similarity*:

* a **tail query** ``(h, r, ?)`` maps the head embedding to a point ``q = φ_r(e_h)``;
* a **head query** ``(?, r, t)`` maps the tail embedding to a point ``q = ψ_r(e_t)``;
* the score of a candidate entity ``e`` is ``sim(q, e)``.

Scoring all ``N`` entities is then one query map per query plus one ``[B, N]`` similarity
(a matrix product for dot products and Euclidean distances), which is what makes filtered
evaluation fast. Flow decoders use ``φ_r = f_r`` and ``ψ_r = f_r⁻¹`` (the exact inverse);
classic decoders use the closed-form inverse of their interaction (TransE: ``e_t − r``,
RotatE: ``conj(r) ∘ e_t``), or — like ConvE — a reciprocal relation ``r + R``; the attribute
:attr:`Decoder.uses_reciprocal` says which. Trainers and evaluators never need to know.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.triples import check_direction


class Decoder(nn.Module):
    r"""Base class of relation decoders.

    Args:
        num_relations: number of relations ``R`` (forward relations only).
        dim: entity embedding size ``d`` expected from the encoder.
        rel_dim: size of one relation's parameters in the decoder's own table.
        relation_source: ``"own"`` — the decoder keeps a relation table ``[R(·2), rel_dim]``;
            ``"encoder"`` — relation representations come from the encoder (e.g. CompGCN's
            ``[2R, d]``) and are passed as ``rel`` to every call.

    Shapes: ``ent: [N, d]``, ``rel: [2R, d_r] | None``, ``h, r, t: LongTensor[B]``.
    """

    # ---------------------------------------------------------- capability flags
    # Read by the trainer (which modes a decoder trains in) and by
    # :func:`gnn_inn.training.capabilities.combination_table` (the README's table).

    #: Whether head queries use reciprocal relation ids ``r + R`` (needs ``2R`` relation rows).
    uses_reciprocal: bool = False
    #: How head queries ``(?, r, t)`` are answered: ``"inverse"`` (the exact inverse map
    #: ``f_r⁻¹``), ``"closed_form"`` (the interaction's closed-form inverse) or
    #: ``"reciprocal"`` (a learned reciprocal relation ``r + R``).
    head_queries: str = "closed_form"
    #: Whether :meth:`score_shared` scores a step's shared candidate set (what
    #: neighbour-sampled training needs); every decoder here does.
    scores_shared: bool = True
    #: What :meth:`score_shared` computes in training, when it differs from the ranking score.
    shared_score: str = "the ranking score"
    #: Whether training-mode scores normalise with batch statistics (batch norm): then each
    #: ``torchrun`` rank normalises its own slice and 2 processes differ from 1.
    batch_statistics: bool = False
    #: Whether relations act as invertible flows ``f_r``: ``transform(x, r, rel, inverse)``,
    #: per-relation ``patterns``, :meth:`pattern_table` and :meth:`composition_rules` (the
    #: trainer reports them; :func:`~gnn_inn.decoders.certificate.certify` checks them).
    relation_flows: bool = False
    #: Whether :meth:`density_terms` gives a normalised density (what ``flow_nll`` trains).
    density: bool = False
    #: Whether :meth:`sample_entities` draws answers (``gnn-inn sample``, many-answer metrics).
    samples_entities: bool = False

    def __init__(
        self, *, num_relations: int, dim: int, rel_dim: int | None = None,
        relation_source: str = "own",
    ) -> None:
        super().__init__()
        if relation_source not in ("own", "encoder"):
            raise ValueError(
                f"relation_source must be 'own' or 'encoder', got {relation_source!r}"
            )
        self.num_relations = int(num_relations)
        self.dim = int(dim)
        self.rel_dim = int(rel_dim if rel_dim is not None else dim)
        self.relation_source = relation_source
        #: whether :meth:`score_tails` & co. read relation vectors from their ``rel`` argument
        #: (the encoder's); a subclass whose relation parameters are indexed by id sets False
        self.reads_relation_vectors = relation_source == "encoder"
        if relation_source == "own":
            rows = 2 * self.num_relations if self.uses_reciprocal else self.num_relations
            self.relation = nn.Parameter(torch.empty(rows, self.rel_dim))
        else:
            self.register_parameter("relation", None)

    # ------------------------------------------------------------------ helpers
    def reset_parameters(self) -> None:
        if self.relation is not None:
            nn.init.xavier_uniform_(self.relation)

    def relation_embedding(self, rel: Tensor | None, r: Tensor) -> Tensor:
        """Relation parameters ``[B, rel_dim]`` for ids ``r`` from ``rel`` or the own table."""
        table = self.relation if rel is None else rel
        if table is None:
            raise ValueError(
                f"{type(self).__name__} was built with relation_source='encoder' but the "
                "encoder returned no relation embeddings; use relation_source='own' or an "
                "encoder that provides relations (e.g. 'compgcn')"
            )
        return table[r]

    # ------------------------------------------------------- to be implemented
    def tail_query(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor) -> Tensor:
        """Query points ``[B, d_q]`` for tail queries ``(h, r, ?)``."""
        raise NotImplementedError

    def head_query(self, ent: Tensor, rel: Tensor | None, r: Tensor, t: Tensor) -> Tensor:
        """Query points ``[B, d_q]`` for head queries ``(?, r, t)``."""
        raise NotImplementedError

    def similarity_all(self, q: Tensor, ent: Tensor) -> Tensor:
        """Scores ``[B, N]`` of every query point ``q[B, d_q]`` against every entity ``ent[N, d]``.
        """
        raise NotImplementedError

    def similarity_pairs(self, q: Tensor, cand: Tensor, cand_idx: Tensor) -> Tensor:
        """Scores ``[B, K]`` of ``q[B, d_q]`` against its own candidates ``cand[B, K, d]``.

        ``cand_idx: LongTensor[B, K]`` are the candidates' entity ids (for per-entity biases).
        """
        raise NotImplementedError

    # --------------------------------------------------------------- public API
    def score_tails(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor) -> Tensor:
        """Scores ``[B, N]`` of all entities as tails of ``(h, r, ?)``."""
        return self.similarity_all(self.tail_query(ent, rel, h, r), ent)

    def score_heads(self, ent: Tensor, rel: Tensor | None, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B, N]`` of all entities as heads of ``(?, r, t)``."""
        return self.similarity_all(self.head_query(ent, rel, r, t), ent)

    def score_candidates(
        self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, t: Tensor,
        candidates: Tensor, direction: str = "tail",
    ) -> Tensor:
        """Scores ``[B, K]``: ``candidates[B, K]`` replace the tail (``direction='tail'``) or
        the head (``'head'``)."""
        q = self.query_points(ent, rel, h, r, t, direction)
        return self.similarity_pairs(q, ent[candidates], candidates)

    def score_shared(
        self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, t: Tensor,
        candidates: Tensor, direction: str = "tail", ids: Tensor | None = None,
    ) -> Tensor:
        """Scores ``[B, K]`` of every query against one shared candidate set.

        The training score of neighbour-sampled steps: ``B`` queries (``direction='tail'``:
        ``(h, r, ?)``; ``'head'``: ``(?, r, t)``) against the same ``K`` entities — one query
        map per query and one ``[B, K]`` similarity, never a ``[B, K, d]`` gather.

        Args:
            ent: ``[n, d]`` entity rows (the full table, or a subgraph's encodings).
            rel: relation representations or ``None``.
            h, r, t: ``LongTensor[B]``; ``h`` / ``t`` are rows of ``ent``.
            candidates: ``LongTensor[K]`` rows of ``ent``.
            direction: ``'tail'`` or ``'head'``.
            ids: ``LongTensor[n]`` global entity id of each row of ``ent`` (subgraph
                encodings); ``None`` when row = id. Used by per-entity terms (biases).
        """
        q = self.query_points(ent, rel, h, r, t, direction)
        cand_ids = candidates if ids is None else ids[candidates]
        return self.similarity_shared(q, ent[candidates], cand_ids)

    def similarity_shared(self, q: Tensor, cand: Tensor, cand_idx: Tensor) -> Tensor:
        """Scores ``[B, K]`` of ``q[B, d_q]`` against shared candidates ``cand[K, d]`` (global
        ids ``cand_idx [K]``); default :meth:`similarity_all` on the ``K`` rows (decoders with
        per-entity terms add them here)."""
        return self.similarity_all(q, cand)

    def query_points(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, t: Tensor,
                     direction: str) -> Tensor:
        """Query points ``[B, d_q]``: :meth:`tail_query` for ``direction='tail'``, else
        :meth:`head_query`."""
        if check_direction(direction) == "tail":
            return self.tail_query(ent, rel, h, r)
        return self.head_query(ent, rel, r, t)

    def score(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B]`` of the triples ``(h, r, t)`` (tail direction)."""
        return self.score_candidates(ent, rel, h, r, t, t.unsqueeze(1), "tail").squeeze(1)

    # ------------------------------------------ behind the capability flags above
    def pattern_table(self) -> list[str]:
        """One pattern string per relation (decoders with :attr:`relation_flows`)."""
        raise NotImplementedError(f"{type(self).__name__} has no relation patterns")

    def composition_rules(self) -> list[dict]:
        """The composition ties, one dict per composed relation (:attr:`relation_flows`)."""
        raise NotImplementedError(f"{type(self).__name__} has no relation patterns")

    def density_terms(self, ent: Tensor, rel: Tensor | None, anchor: Tensor, r: Tensor,
                      target: Tensor, direction: str) -> dict[str, Tensor]:
        """The terms of the ``flow_nll`` loss (decoders with :attr:`density`)."""
        raise NotImplementedError(f"{type(self).__name__} defines no density")

    def sample_entities(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, n: int,
                        generator: torch.Generator | None = None, *, direction: str = "tail",
                        temperature: float = 1.0) -> Tensor:
        """``LongTensor[B, n]`` sampled answers (decoders with :attr:`samples_entities`)."""
        raise NotImplementedError(f"{type(self).__name__} is deterministic and cannot sample")

    def extra_repr(self) -> str:
        return f"num_relations={self.num_relations}, dim={self.dim}"


# ---------------------------------------------------------------- similarities
def dot_all(q: Tensor, ent: Tensor) -> Tensor:
    """``q @ entᵀ``: ``[B, d] × [N, d] → [B, N]``."""
    return q @ ent.t()


def dot_pairs(q: Tensor, cand: Tensor) -> Tensor:
    """``[B, d] · [B, K, d] → [B, K]``."""
    return torch.einsum("bd,bkd->bk", q, cand)


def neg_distance_all(q: Tensor, ent: Tensor, p: float, chunk: int = 2048) -> Tensor:
    """``−‖q_b − e_n‖_p`` for all pairs, ``[B, N]``.

    ``p = 2`` uses the expansion ``‖q‖² + ‖e‖² − 2 q·e`` (one matrix product, clamped at
    1e-12 before the square root); other ``p`` go through :func:`torch.cdist` in entity chunks so
    memory stays ``O(B · chunk)``.
    """
    if p == 2:
        sq = torch.addmm((q * q).sum(-1, keepdim=True) + (ent * ent).sum(-1).unsqueeze(0),
                         q, ent.t(), alpha=-2.0)
        # clamp: rounding can make the expansion slightly negative, and sqrt'(0) is infinite
        return -sq.clamp_min(1e-12).sqrt()
    out = [torch.cdist(q, ent[i : i + chunk], p=p) for i in range(0, ent.shape[0], chunk)]
    return -torch.cat(out, dim=1)


def neg_distance_pairs(q: Tensor, cand: Tensor, p: float) -> Tensor:
    """``−‖q_b − c_bk‖_p``, ``[B, K]``."""
    return -torch.linalg.vector_norm(q.unsqueeze(1) - cand, ord=p, dim=-1)


def complex_neg_distance_all(q: Tensor, ent: Tensor, chunk: int | None = None) -> Tensor:
    """``−Σ_k |q_k − e_k|`` with complex coordinates stored as ``[re | im]`` halves, ``[B, N]``.

    No matrix-product form exists for a sum of complex moduli, so the ``[B, chunk, d/2]``
    difference is built chunk by chunk over entities (``chunk`` chosen to keep it ≤ ~64 MB).
    """
    half = q.shape[-1] // 2
    qr, qi = q[:, :half], q[:, half:]
    er, ei = ent[:, :half], ent[:, half:]
    if chunk is None:
        chunk = max(1, (16 * 2**20) // max(1, q.shape[0] * half))
    out = []
    for i in range(0, ent.shape[0], chunk):
        dr = qr.unsqueeze(1) - er[i : i + chunk].unsqueeze(0)
        di = qi.unsqueeze(1) - ei[i : i + chunk].unsqueeze(0)
        out.append(torch.sqrt(dr * dr + di * di + 1e-12).sum(-1))
    return -torch.cat(out, dim=1)


def complex_neg_distance_pairs(q: Tensor, cand: Tensor) -> Tensor:
    half = q.shape[-1] // 2
    dr = q[:, None, :half] - cand[..., :half]
    di = q[:, None, half:] - cand[..., half:]
    return -torch.sqrt(dr * dr + di * di + 1e-12).sum(-1)


# ------------------------------------------------------- facts with per-fact embeddings
def decoder_reads_relations(decoder: Decoder) -> bool:
    """Whether ``decoder`` reads relation vectors from its ``rel`` argument.

    False for a decoder with its own relation table and for a table-conditioned flow decoder
    (its relation parameters live inside the flow and are indexed by relation id).
    """
    return decoder.reads_relation_vectors


def fact_queries(decoder: Decoder, z_h: Tensor, z_r: Tensor | None, r: Tensor) -> Tensor:
    """The decoder's tail-query points of facts with per-fact embeddings, ``[..., B, d_q]``.

    The query map runs on a per-call "virtual" table — fact ``i`` reads head row ``i`` and
    relation row ``i`` (DistMult: ``z_h ∘ z_r``; a flow: ``f(z_h; z_r)``). Decoders that keep
    deterministic relation parameters (own table, table-conditioned flow) get the real
    relation ids ``r`` (``z_r`` is then ignored). A context-conditioned flow decoder reads
    relation ids for its patterns, so its per-fact path calls its flow directly with ``z_r`` as
    context and needs every relation ``free``.

    Args:
        decoder: a :class:`Decoder`.
        z_h: ``[..., B, d]``.  z_r: ``[..., B, d_r]`` or ``None``.  r: ``LongTensor[B]``.
    """
    lead = z_h.shape[:-1]
    m = z_h[..., 0].numel()
    zh = z_h.reshape(m, z_h.shape[-1])
    idx = torch.arange(m, device=z_h.device)
    if z_r is not None and decoder_reads_relations(decoder):
        zr = z_r.reshape(m, z_r.shape[-1])
        if decoder.relation_flows:  # flow decoder: ids select patterns
            if set(decoder.pattern_summary()) != {"free"}:
                raise ValueError(
                    "per-fact sampled relation contexts need every relation pattern 'free' "
                    f"(got {decoder.pattern_summary()}); use patterns: free, or "
                    "conditioning: table with encoder relations: false, or variant lim")
            q = decoder.flow.forward(zh, zr)[0]
        else:
            q = decoder.tail_query(zh, zr, idx, idx)
    else:
        q = decoder.tail_query(zh, None, idx, r.to(z_h.device).expand(lead).reshape(m))
    return q.reshape(*lead, q.shape[-1])


def score_facts(decoder: Decoder, z_h: Tensor, z_r: Tensor | None, z_t: Tensor, r: Tensor,
                t: Tensor) -> Tensor:
    """Decoder scores of facts whose embeddings are given *per fact*, ``[..., B]``.

    Each fact has its own (e.g. sampled) head, relation and tail vector: the query points come
    from :func:`fact_queries` and each is compared with its own tail vector by the decoder's
    ``similarity_pairs`` (with the real tail ids ``t`` for per-entity biases). A flow
    decoder's symmetric training score is not used here.

    Args:
        decoder: a :class:`Decoder`.
        z_h, z_t: ``[..., B, d]``.  z_r: ``[..., B, d_r]`` or ``None``.
        r, t: relation and tail ids ``LongTensor[B]``.

    Returns:
        ``[..., B]`` scores (tail direction, ``s(h, r, t)``).
    """
    lead = z_h.shape[:-1]
    q = fact_queries(decoder, z_h, z_r, r)
    m = z_h[..., 0].numel()
    q = q.reshape(m, q.shape[-1])
    zt = z_t.reshape(m, z_t.shape[-1])
    t_ids = t.to(z_h.device).expand(lead).reshape(m)
    s = decoder.similarity_pairs(q, zt.unsqueeze(1), t_ids.unsqueeze(1)).squeeze(1)
    return s.reshape(lead)


__all__ = [
    "Decoder", "dot_all", "dot_pairs", "neg_distance_all", "neg_distance_pairs",
    "complex_neg_distance_all", "complex_neg_distance_pairs", "decoder_reads_relations",
    "fact_queries", "score_facts",
]
