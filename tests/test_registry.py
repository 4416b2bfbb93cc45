"""The one resolver (gnn_inn.registry) and every family built through it."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from gnn_inn.decoders import DECODERS, build_decoder
from gnn_inn.encoders import ENCODERS, build_encoder
from gnn_inn.flows import FLOWS, build_flow
from gnn_inn.registry import accepted_options, lookup, normalize, resolve
from gnn_inn.training.losses import LOSSES, build_loss
from gnn_inn.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler

N, R, D = 12, 3, 8
TRAIN = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, 3], [3, 0, 4]])


def _cfg(**kw):
    base = {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0, "fused_optimizer": False,
            "scheduler": None, "epochs": 5}
    return SimpleNamespace(**{**base, **kw})


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def test_normalized_names_resolve_to_the_registered_key():
    assert normalize("  Stochastic-Flow ") == "stochastic_flow"
    reg = {"stochastic_flow": int, "1vsall": float}
    assert lookup("decoder", reg, "STOCHASTIC-flow") == ("stochastic_flow", int)
    assert lookup("loss", reg, "1VsAll") == ("1vsall", float)
    assert type(build_decoder("Dist-Mult".replace("-", ""), num_relations=R, dim=D)).__name__ \
        == "DistMult"
    assert type(build_decoder("STOCHASTIC-FLOW", num_relations=R, dim=D)).__name__ \
        == "StochasticFlowDecoder"
    assert type(build_encoder("RGCN", num_entities=N, num_relations=R, dim=D)).__name__ \
        == "RGCNEncoder"
    assert len(build_flow("Spline-Coupling", dim=4).flows) == 5
    assert type(build_loss("NSSA", TRAIN, N, R)).__name__ == "NegativeSamplingLoss"
    assert isinstance(build_optimizer(_cfg(optimizer="AdamW"), _params()), torch.optim.AdamW)
    opt = build_optimizer(_cfg(), _params())
    assert isinstance(build_scheduler(_cfg(scheduler={"name": "Exponential", "gamma": 0.9}),
                                      opt, 1), torch.optim.lr_scheduler.ExponentialLR)


@pytest.mark.parametrize("family, build, registry", [
    ("encoder", lambda q: build_encoder(q, num_entities=N, num_relations=R, dim=D), ENCODERS),
    ("decoder", lambda q: build_decoder(q, num_relations=R, dim=D), DECODERS),
    ("flow", lambda q: build_flow(q, dim=4), FLOWS),
    ("loss", lambda q: build_loss(q, TRAIN, N, R), LOSSES),
    ("optimizer", lambda q: build_optimizer(_cfg(optimizer=q), _params()), OPTIMIZERS),
    ("scheduler", lambda q: build_scheduler(_cfg(scheduler={"name": q}),
                                            build_optimizer(_cfg(), _params()), 1), SCHEDULERS),
])
def test_unknown_name_lists_the_choices(family, build, registry):
    choices = "{" + ", ".join(repr(k) for k in sorted(registry)) + "}"
    with pytest.raises(ValueError) as e:
        build("no-such-thing")
    assert f"could not resolve {family} 'no-such-thing' among choices {choices}" in str(e.value)


def _options_error(build) -> str:
    with pytest.raises(ValueError) as e:
        build()
    return str(e.value)


INJECTED = ("train_triples", "num_entities", "relation_names", "num_relations", "dim",
            "params", "optimizer", "cond", "type_ranges", "train")


@pytest.mark.parametrize("family, build, accepted", [
    ("encoder 'rgcn'", lambda: build_encoder("rgcn", num_entities=N, num_relations=R, dim=D,
                                             layers=2), ["num_layers", "conv", "edge_dropout"]),
    ("decoder 'flow'", lambda: build_decoder("flow", num_relations=R, dim=D, num_entities=N,
                                             train_triples=TRAIN, relation_names=["a", "b", "c"],
                                             bogus=1), ["flow", "patterns", "relation_source"]),
    ("decoder 'conve'", lambda: build_decoder("conve", num_relations=R, dim=D, num_entities=N,
                                              bogus=1), ["entity_bias", "relation_source"]),
    ("flow 'spline_coupling'", lambda: build_flow({"name": "spline_coupling", "bogus": 1},
                                                  dim=4), ["num_blocks", "num_bins", "hidden"]),
    ("loss 'kvsall'", lambda: build_loss("kvsall", TRAIN, N, R, type_ranges=None, bogus=1),
     ["label_smoothing"]),
    ("optimizer 'adam'", lambda: resolve("optimizer", OPTIMIZERS, "adam", _params(),
                                         options={"lr": 0.1, "bogus": 1}), ["lr", "betas"]),
    ("scheduler 'step'", lambda: build_scheduler(
        _cfg(scheduler={"name": "step", "step_size": 2, "bogus": 1}),
        build_optimizer(_cfg(), _params()), 1), ["step_size", "gamma"]),
])
def test_unknown_option_lists_accepted_ones_and_never_the_injected(family, build, accepted):
    msg = _options_error(build)
    assert f"{family}: unknown option " in msg, msg
    assert "bogus" in msg or "'layers'" in msg
    listed = re.search(r"accepted options: (.*)$", msg).group(1).split(", ")
    for name in accepted:
        assert name in listed, (name, msg)
    for name in INJECTED:
        assert name not in listed, (name, msg)


def test_missing_option_is_named():
    msg = _options_error(lambda: build_scheduler(_cfg(scheduler={"name": "step"}),
                                                 build_optimizer(_cfg(), _params()), 1))
    assert "scheduler 'step': missing option 'step_size'" in msg


def test_accepted_options_skip_positional_and_supplied_arguments():
    def factory(a, b, *, c=1, d=2, **rest):
        return a, b, c, d

    assert accepted_options(factory, num_args=2, supplied={"d"}) == ["c"]
    assert resolve("thing", {"f": factory}, "f", 1, 2, options={"c": 3}) == (1, 2, 3, 2)


def test_classes_and_objects_pass_through():
    assert resolve("thing", {}, dict, options={"a": 1}) == {"a": 1}
    obj = object()
    assert resolve("thing", {}, obj) is obj


def test_offered_arguments_go_only_to_factories_that_take_them():
    def plain(*, x=0):
        return x

    def greedy(*, x=0, train_triples=None):
        return x, train_triples

    reg = {"plain": plain, "greedy": greedy}
    assert resolve("thing", reg, "plain", offered={"train_triples": 5}) == 0
    assert resolve("thing", reg, "greedy", offered={"train_triples": 5}) == (0, 5)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_resolves(name):
    enc = build_encoder(name, num_entities=N, num_relations=R, dim=D)
    assert isinstance(enc, ENCODERS[name])


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_every_decoder_resolves(name):
    options = {"kernel_size": 2} if name == "conve" else {}  # fits the [2*4, 2] image of d=8
    dec = build_decoder(name, num_relations=R, dim=D, num_entities=N, train_triples=TRAIN,
                        relation_names=["a", "b", "c"], **options)
    assert isinstance(dec, DECODERS[name])


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_flow_resolves(name):
    flow = build_flow(name, dim=4)
    y, _ = flow(torch.randn(2, 4))
    assert y.shape == (2, 4)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_resolves(name):
    assert isinstance(build_loss(name, TRAIN, N, R), LOSSES[name])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_resolves(name):
    assert isinstance(build_optimizer(_cfg(optimizer=name), _params()), OPTIMIZERS[name])


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_resolves(name):
    spec = {"name": name, **({"step_size": 1} if name == "step" else {}),
            **({"gamma": 0.5} if name == "exponential" else {})}
    opt = build_optimizer(_cfg(), _params())
    assert isinstance(build_scheduler(_cfg(scheduler=spec), opt, 1), SCHEDULERS[name])
