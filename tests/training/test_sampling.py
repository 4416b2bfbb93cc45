"""Neighbour-sampled training: subgraphs are consistent and leak-free, training learns."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.config import Config, ConfigError
from gnn_inn.encoders import CompGCNEncoder, RGCNEncoder
from gnn_inn.training import sampling, trainer_from_config
from gnn_inn.training.sampling import (
    NeighborSampledObjective,
    SamplerSpec,
    SubgraphSampler,
    require_sampling_backend,
)
from helpers import DATA, needs_backend, needs_data


def _keys(triples: torch.Tensor, n: int, r: int) -> set[int]:
    h, rel, t = triples.unbind(1)
    return set(((h * r + rel) * n + t).tolist())


def _edge_triples(sub, graph_kg) -> torch.Tensor:
    """The (h, r, t) each subgraph edge stands for (inverse edges oriented back)."""
    n_r = graph_kg.num_relations
    src, dst = sub.n_id[sub.edge_index]
    fwd = sub.edge_type < n_r
    h = torch.where(fwd, src, dst)
    t = torch.where(fwd, dst, src)
    return torch.stack([h, sub.edge_type % n_r, t], 1)


def _objective(kg, **spec):
    spec = {"num_neighbors": [4, 3], "num_negatives": 16, **spec}
    return NeighborSampledObjective(graph=kg.message_graph(), train=kg.train,
                                    num_entities=kg.num_entities,
                                    num_relations=kg.num_relations, num_layers=2, spec=spec,
                                    loss={"name": "1vsall"})


@needs_backend
def test_subgraph_ids_and_types_match_the_global_graph(kg):
    g = kg.message_graph()
    sampler = SubgraphSampler(g, [5, 5], num_entities=kg.num_entities,
                              num_relations=kg.num_relations, node_degree=True)
    seeds = torch.tensor([0, 7, 19, 42, 200])
    sub = sampler.sample(seeds)
    assert torch.equal(sub.n_id[:seeds.numel()], seeds)
    assert sub.num_nodes == sub.n_id.numel() == torch.unique(sub.n_id).numel()
    assert int(sub.edge_index.max()) < sub.num_nodes
    # every sampled edge is the global edge e_id: same endpoints, same type
    assert torch.equal(sub.n_id[sub.edge_index], g.edge_index[:, sub.e_id])
    assert torch.equal(sub.edge_type, g.edge_type[sub.e_id])
    # fan-out respected: at most 5 sampled in-edges per node
    assert int(torch.bincount(sub.edge_index[1]).max()) <= 5
    # full-graph degrees ride along
    deg = sampling.full_degrees(g.edge_index, g.edge_type, kg.num_entities, kg.num_relations)
    assert torch.equal(sub.node_degree, deg[sub.n_id])
    assert float(deg[:, :2].sum()) == g.edge_index.size(1)


@needs_backend
def test_full_fanout_samples_the_exact_k_hop_in_neighbourhood(kg):
    g = kg.message_graph()
    sampler = SubgraphSampler(g, [-1, -1], num_entities=kg.num_entities,
                              num_relations=kg.num_relations)
    seeds = torch.tensor([3, 50])
    sub = sampler.sample(seeds)
    hop1 = torch.isin(g.edge_index[1], seeds)
    nodes1 = torch.unique(torch.cat([seeds, g.edge_index[0, hop1]]))
    hop2 = torch.isin(g.edge_index[1], nodes1)
    assert set(sub.e_id.tolist()) == set(torch.nonzero(hop2).flatten().tolist())


@needs_backend
def test_supervision_edges_and_inverses_never_in_their_own_subgraph(kg):
    obj = _objective(kg, num_neighbors=[-1, -1])
    held_out = _keys(torch.cat([kg.valid, kg.test]), kg.num_entities, kg.num_relations)
    gen = torch.Generator().manual_seed(0)
    for i, batch in enumerate(obj.batches(64, gen)):
        for rank, world in ((0, 1), (0, 2), (1, 2)):
            sub, seeds, part = obj.subgraph(batch, rank, world)
            got = _keys(_edge_triples(sub, kg), kg.num_entities, kg.num_relations)
            assert not got & _keys(batch.triples, kg.num_entities, kg.num_relations)
            assert not got & held_out
            assert torch.equal(sub.n_id[:seeds.numel()], seeds)
        if i == 3:
            break
    # the same step without exclusion does contain its own supervision edges
    obj_leaky = _objective(kg, num_neighbors=[-1, -1], exclude_targets=False)
    sub, _, _ = obj_leaky.subgraph(batch)
    got = _keys(_edge_triples(sub, kg), kg.num_entities, kg.num_relations)
    assert got & _keys(batch.triples, kg.num_entities, kg.num_relations)


@needs_backend
@pytest.mark.parametrize("name", ["rgcn", "compgcn", "compgcn_residual"])
def test_full_fanout_subgraph_reproduces_full_graph_embeddings(kg, name):
    """With every in-edge sampled, the k-hop subgraph gives the seeds their exact full-graph
    embeddings (n_id selects the input rows; CompGCN's norms use full-graph degrees)."""
    torch.manual_seed(0)
    if name == "rgcn":
        enc = RGCNEncoder(num_entities=kg.num_entities, num_relations=kg.num_relations, dim=8)
    else:
        enc = CompGCNEncoder(num_entities=kg.num_entities, num_relations=kg.num_relations,
                             dim=8, norm="paper", residual=name == "compgcn_residual")
    enc.eval()
    g = kg.message_graph()
    sampler = SubgraphSampler(g, [-1, -1], num_entities=kg.num_entities,
                              num_relations=kg.num_relations, node_degree=name != "rgcn")
    seeds = torch.tensor([1, 10, 100, 300])
    full, _ = enc(g)
    part, _ = enc(sampler.sample(seeds))
    torch.testing.assert_close(part[:seeds.numel()], full[seeds], atol=1e-5, rtol=1e-5)


def test_sampler_spec_validation():
    spec = SamplerSpec.from_dict({"num_neighbors": 7, "num_negatives": 32}, num_layers=3)
    assert spec.num_neighbors == [7, 7, 7] and spec.num_negatives == 32
    assert SamplerSpec.from_dict({}, num_layers=2).num_neighbors == [10, 10]
    with pytest.raises(ConfigError, match="unknown key 'fanout'"):
        SamplerSpec.from_dict({"fanout": 3}, num_layers=2)
    with pytest.raises(ConfigError, match="one fan-out per layer"):
        SamplerSpec.from_dict({"num_neighbors": [5]}, num_layers=2)
    with pytest.raises(ConfigError, match="num_negatives must be a positive int"):
        SamplerSpec.from_dict({"num_negatives": 0}, num_layers=2)


def test_missing_backend_says_how_to_install(monkeypatch):
    import torch_geometric.typing as pyg_typing

    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    with pytest.raises(ImportError, match=r"pip install 'gnn-inn\[sampling\]'"):
        require_sampling_backend()
    cfg = _config("synthetic", None, epochs=1)
    with pytest.raises(ImportError, match="torch-sparse or pyg-lib"):
        trainer_from_config(cfg, quiet=True)


def test_lookup_encoder_is_refused():
    cfg = _config("synthetic", None, epochs=1)
    cfg.model.encoder = {"name": "none"}
    if sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    with pytest.raises(ConfigError, match="message-passing encoder"):
        trainer_from_config(cfg, quiet=True)


def _config(dataset, data_dir, *, epochs, loss="1vsall", encoder="rgcn", fanout=(5, 5)):
    enc = {"name": encoder, "num_layers": 2}
    if encoder == "compgcn":
        enc.update(dropout=0.0, hidden_dropout=0.0, composition="mult")
    return Config.from_dict({
        "seed": 0,
        "dataset": {"name": dataset, "data_dir": data_dir},
        "model": {"dim": 32, "encoder": enc, "decoder": {"name": "distmult"}},
        "train": {"loss": {"name": loss}, "epochs": epochs, "batch_size": 256, "lr": 0.01,
                  "eval_every": 0, "device": "cpu",
                  "sampler": {"num_neighbors": list(fanout), "num_negatives": 64,
                              "inference_batch_size": 40}},
    })


@needs_backend
@needs_data
@pytest.mark.parametrize("loss", ["1vsall", "kvsall", "nssa"])
def test_sampled_training_on_umls_improves_mrr(loss):
    tr = trainer_from_config(_config("umls", DATA, epochs=2, loss=loss), quiet=True)
    before = tr.evaluate("valid").metrics()["mrr"]
    for _ in range(2):
        tr.train_epoch()
    after = tr.evaluate("valid").metrics()["mrr"]
    assert 0 < tr.sampler.last_subgraph[1]
    # 1vsall / nssa reach ~0.6 after two epochs; BCE over 65 candidates learns slower
    assert after > before + (0.03 if loss == "kvsall" else 0.3), (before, after)


@needs_backend
def test_sampled_compgcn_trains_and_evaluates_layer_wise(kg):
    tr = trainer_from_config(_config("synthetic", None, epochs=1, encoder="compgcn"),
                             quiet=True)
    assert tr.model.encoder.inference_batch_size == 40
    calls = []
    orig = tr.model.encoder.inference
    tr.model.encoder.inference = lambda g, bs: calls.append(bs) or orig(g, bs)
    res = tr.fit()
    assert calls and set(calls) == {40}  # evaluation went through layer-wise inference
    assert res["test"]["mrr"] > 0


@needs_backend
@pytest.mark.parametrize("in_batch", [True, False])
def test_shared_candidates_include_the_batch_entities(in_batch):
    cfg = _config("synthetic", None, epochs=1)
    cfg.train.sampler["batch_negatives"] = in_batch
    tr = trainer_from_config(cfg, quiet=True)
    g = torch.Generator().manual_seed(0)
    for step in tr.sampler.batches(32, g):
        ents = set(step.triples[:, 0].tolist()) | set(step.triples[:, 2].tolist())
        cand = set(step.negatives.tolist())
        if in_batch:
            assert ents <= cand and step.negatives.unique().numel() == step.negatives.numel()
            assert len(cand) <= 64 + len(ents)
        else:
            assert step.negatives.numel() == 64
    with pytest.raises(ConfigError, match="batch_negatives"):
        sampling.SamplerSpec.from_dict({"batch_negatives": "yes"}, num_layers=2)
