"""The invertibility certificate of a trained flow decoder, through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from gnn_inn.cli import main
from gnn_inn.decoders import DistMult, FlowDecoder
from gnn_inn.decoders.certificate import certify
from gnn_inn.encoders import LookupEncoder
from gnn_inn.model import LinkPredictor


@pytest.mark.parametrize("flow", ["affine_coupling", "spline_coupling", "lu"])
def test_certificate_values(flow):
    torch.manual_seed(0)
    m = LinkPredictor(encoder=LookupEncoder(num_entities=20, dim=8),
                      decoder=FlowDecoder(num_relations=3, dim=8, flow=flow,
                                          patterns=["free", "involution", "tied-inverse:0"]))
    with torch.no_grad():
        for prm in m.decoder.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    c = certify(m, per_relation=20, jacobian_samples=3)
    assert c["float64"]["max"] < 1e-9 and c["float32"]["max"] < 1e-4
    assert c["float64_random"]["max"] < 1e-6 and c["num_points"] == 60
    assert c["logdet_max_abs_error"] < 1e-8 and c["logdet_samples"] == 3


def test_certificate_needs_a_flow_decoder():
    m = LinkPredictor(encoder=LookupEncoder(num_entities=5, dim=4),
                      decoder=DistMult(num_relations=2, dim=4))
    with pytest.raises(ValueError, match="flow decoder"):
        certify(m)


def test_certify_command_writes_results(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: synthetic}\nmodel: {dim: 8, decoder: {name: flow, "
                   "flow: affine_coupling, patterns: auto}}\ntrain: {epochs: 2, eval_every: 1, "
                   "loss: {name: 1vsall}, device: cpu}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["relation_patterns"]["symmetric_0"] == "involution"
    assert res["relation_patterns"]["inverse_b"].startswith("tied-inverse")
    assert res["certificate"]["float32"]["max"] < 1e-4
    capsys.readouterr()
    assert main(["certify", str(out / "best.pt"), "--per-relation", "8", "--samples", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["logdet_samples"] == 2
    assert json.loads((out / "results.json").read_text())["certificate"] == printed
