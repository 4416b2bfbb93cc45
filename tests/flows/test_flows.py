"""Every registered flow family in every conditioning mode, tested as zuko / nflows test flows:
shape, round trip, log-det against autograd ``slogdet`` in both directions, opposite log-dets,
involutions, gradients (also at extreme inputs), save / load, identity at initialisation and
clear errors for a context that does not fit. Parameters are randomised away from the
identity initialisation before every check, so nothing passes trivially."""

from __future__ import annotations

import io

import pytest
import torch

from gnn_inn.flows import FLOWS, build_flow, make_involution
from helpers import perturb

D, B, R, C = 6, 32, 3, 4
MODES = ["none", "table", "context"]
# every registered family with its defaults, plus variants exercising non-default options
SPECS: list[dict] = [
    {"name": "translation"},
    {"name": "affine"},
    {"name": "rotation", "init_angles": "zero"},
    {"name": "rotation", "translate": True, "init_angles": "zero"},
    {"name": "orthogonal"},
    {"name": "lu"},
    {"name": "additive_coupling"},
    {"name": "affine_coupling"},
    {"name": "affine_coupling", "learned_permutation": True},
    {"name": "additive_coupling", "num_blocks": 3, "final_affine": False},
    {"name": "spline_coupling"},
    {"name": "spline_coupling", "learned_permutation": True, "input_bound": None},
]
# perturbation of every parameter: float64 checks far from the identity (weights moved by
# several times their default-init size); float32 round trips at about their own size
STD64, STD32 = 0.2, 0.1


def _id(spec: dict) -> str:
    extra = [f"{k}={v}" for k, v in spec.items() if k != "name"]
    return "-".join([spec["name"], *extra])


CASES = [pytest.param(s, m, id=f"{_id(s)}-{m}") for s in SPECS for m in MODES]


def test_every_registered_family_is_tested():
    """Meta-test: a family added to FLOWS without an entry in SPECS fails here."""
    assert {s["name"] for s in SPECS} == set(FLOWS)


def _cond(mode):
    return {"none": {}, "table": {"num_contexts": R}, "context": {"context_dim": C}}[mode]


def _context(mode, batch, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    if mode == "table":
        return torch.randint(R, (batch,), generator=g)
    if mode == "context":
        return torch.randn(batch, C, generator=g, dtype=dtype)
    return None


def _flow(spec, mode, dtype=torch.float64, std=STD64, dim=D, involution=None):
    torch.manual_seed(0)
    spec = dict(spec)
    if involution:
        spec["involution"] = involution
    return perturb(build_flow(spec, dim=dim, **_cond(mode)).to(dtype), std=std, seed=1)


def _rows(ctx, i):
    return None if ctx is None else ctx[i: i + 1]


@pytest.mark.parametrize("spec,mode", CASES)
@pytest.mark.parametrize("dim", [D, 5])
def test_shape_and_round_trip_float64(spec, mode, dim):
    f = _flow(spec, mode, dim=dim)
    g = torch.Generator().manual_seed(2)
    for scale in (1.0, 10.0, 1e3):
        x = (torch.rand(B, dim, generator=g, dtype=torch.float64) * 2 - 1) * scale
        ctx = _context(mode, B)
        y, ld = f(x, ctx)
        assert y.shape == x.shape and ld.shape == (B,) and y.dtype == ld.dtype == x.dtype
        back, ld_inv = f.inverse(y, ctx)
        assert back.shape == x.shape and ld_inv.shape == (B,)
        assert (back - x).abs().max() <= 1e-6, (scale, (back - x).abs().max())
        assert (ld + ld_inv).abs().max() <= 1e-6


@pytest.mark.parametrize("spec,mode", CASES)
def test_round_trip_float32(spec, mode):
    f = _flow(spec, mode, torch.float32, std=STD32)
    g = torch.Generator().manual_seed(3)
    for scale in (1.0, 5.0, 30.0, 1e3):
        x = (torch.rand(B, D, generator=g) * 2 - 1) * scale  # |x| ≤ scale
        ctx = _context(mode, B, torch.float32)
        back, _ = f.inverse(f(x, ctx)[0], ctx)
        # 1e-4 absolute up to |x| = 1, relative above: one float32 ulp at 1e3 is 6.1e-5 (1.2e-4
        # once an output passes 1024), so an absolute 1e-4 cannot hold for any non-trivial map
        tol = 1e-4 * max(1.0, float(x.abs().max()))
        assert (back - x).abs().max() <= tol, (scale, (back - x).abs().max(), tol)


@pytest.mark.parametrize("spec,mode", CASES)
def test_rows_are_independent(spec, mode):
    """Row i of a batch equals the map applied to row i alone (the id / context gather)."""
    f = _flow(spec, mode)
    x = torch.randn(5, D, dtype=torch.float64)
    ctx = _context(mode, 5)
    y, ld = f(x, ctx)
    for i in range(5):
        yi, li = f(x[i: i + 1], _rows(ctx, i))
        torch.testing.assert_close(yi[0], y[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(li[0], ld[i], rtol=0, atol=1e-12)


def _jac(fn, v, ci):
    return torch.autograd.functional.jacobian(lambda u: fn(u[None], ci)[0][0], v)


@pytest.mark.parametrize("spec,mode", CASES)
def test_logdet_matches_autograd_both_directions(spec, mode):
    f = _flow(spec, mode)
    x = torch.randn(2, D, dtype=torch.float64) * 2
    ctx = _context(mode, 2)
    y, ld = f(x, ctx)
    back, ld_inv = f.inverse(y, ctx)
    for i in range(2):
        ci = _rows(ctx, i)
        jf = _jac(f.forward, x[i], ci)
        ji = _jac(f.inverse, y[i], ci)
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(jf).logabsdet, atol=1e-8, rtol=0)
        torch.testing.assert_close(ld_inv[i], torch.linalg.slogdet(ji).logabsdet, atol=1e-8,
                                   rtol=0)
        torch.testing.assert_close(ld_inv[i], -ld[i], atol=1e-8, rtol=0)
        # the inverse's Jacobian at y is the inverse of the forward Jacobian at x
        torch.testing.assert_close(ji @ jf, torch.eye(D, dtype=torch.float64), atol=1e-8, rtol=0)


@pytest.mark.parametrize("spec,mode", CASES)
@pytest.mark.parametrize("sigma", ["sign", "swap"])
def test_involution_is_its_own_inverse(spec, mode, sigma):
    f = _flow(spec, mode, involution=sigma)
    x = torch.randn(B, D, dtype=torch.float64) * 3
    ctx = _context(mode, B)
    y, ld = f(x, ctx)
    assert (y - x).abs().max() > 1e-3  # not the identity
    back, ld2 = f(y, ctx)
    torch.testing.assert_close(back, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld + ld2, torch.zeros_like(ld), atol=1e-8, rtol=0)
    yi, ldi = f.inverse(x, ctx)
    torch.testing.assert_close(yi, y, atol=0, rtol=0)
    torch.testing.assert_close(ldi, ld, atol=0, rtol=0)
    jf = _jac(f.forward, x[0], _rows(ctx, 0))
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(jf).logabsdet, atol=1e-8, rtol=0)


@pytest.mark.parametrize("spec,mode", CASES)
def test_every_parameter_gets_a_finite_gradient(spec, mode):
    f = _flow(spec, mode, torch.float32, std=STD32)
    x = torch.randn(B, D) * 2
    ctx = torch.arange(B) % R if mode == "table" else _context(mode, B, torch.float32)
    y, ld = f(x, ctx)
    back, ld2 = f.inverse(y * 1.1 + 0.1, ctx)
    (y.square().sum() + ld.sum() + back.square().sum() + ld2.sum()).backward()
    for n, p in f.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("spec,mode", CASES)
def test_gradients_finite_at_extreme_inputs(spec, mode):
    f = _flow(spec, mode, torch.float32, std=STD32)
    for scale in (1e3, 1e6):
        f.zero_grad()
        x = (torch.randn(B, D) * scale).requires_grad_(True)
        ctx = _context(mode, B, torch.float32)
        y, ld = f(x, ctx)
        back, ld2 = f.inverse(y.detach(), ctx)
        assert torch.isfinite(y).all() and torch.isfinite(ld).all()
        assert torch.isfinite(back).all() and torch.isfinite(ld2).all()
        (y.sum() + ld.sum() + back.sum() + ld2.sum()).backward()
        assert torch.isfinite(x.grad).all(), scale
        for n, p in f.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), (scale, n)


@pytest.mark.parametrize("spec,mode", CASES)
def test_state_dict_round_trip(spec, mode):
    f = _flow(spec, mode)
    buf = io.BytesIO()
    torch.save(f.state_dict(), buf)
    torch.manual_seed(123)  # a different initialisation
    g = build_flow(spec, dim=D, **_cond(mode)).double()
    buf.seek(0)
    g.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(B, D, dtype=torch.float64)
    ctx = _context(mode, B)
    for a, b in zip(f(x, ctx), g(x, ctx)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(f.inverse(x, ctx), g.inverse(x, ctx)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("spec,mode", CASES)
def test_starts_at_identity_and_reset_parameters_returns_there(spec, mode):
    """Every family starts at the identity in every mode (couplings: up to their fixed
    permutations), also after ``reset_parameters()`` undoes a perturbation."""
    f = _flow(spec, mode)
    x = torch.randn(B, D, dtype=torch.float64) * 3
    ctx = _context(mode, B)
    assert (f(x, ctx)[0] - x).abs().max() > 1e-3
    f.reset_parameters()
    y, ld = f(x, ctx)
    fresh = build_flow(spec, dim=D, **_cond(mode)).double()
    for g in (f, fresh):
        y, ld = g(x, ctx)
        torch.testing.assert_close(torch.sort(y, 1).values, torch.sort(x, 1).values,
                                   atol=1e-12, rtol=0)
        torch.testing.assert_close(ld, torch.zeros_like(ld), atol=1e-12, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_bad_context_errors(spec):
    x = torch.randn(B, D)
    ft = build_flow(spec, dim=D, num_contexts=R)
    for fn in (ft.forward, ft.inverse):
        with pytest.raises(ValueError, match="needs a context"):
            fn(x, None)
        with pytest.raises(ValueError, match=r"ids must be in \[0, 3\)"):
            fn(x, torch.full((B,), 3))
        with pytest.raises(ValueError, match=r"ids must be in \[0, 3\)"):
            fn(x, torch.full((B,), -1))
        with pytest.raises(ValueError, match="LongTensor"):
            fn(x, torch.randn(B, C))
        with pytest.raises(ValueError, match="LongTensor"):
            fn(x, torch.zeros(B, 1, dtype=torch.long))
        with pytest.raises(ValueError, match="rows for a batch"):
            fn(x, torch.zeros(B + 1, dtype=torch.long))
    fc = build_flow(spec, dim=D, context_dim=C)
    for fn in (fc.forward, fc.inverse):
        with pytest.raises(ValueError, match="needs a context"):
            fn(x, None)
        with pytest.raises(ValueError, match=r"Tensor\[B, 4\]"):
            fn(x, torch.randn(B, C + 1))
        with pytest.raises(ValueError, match=r"Tensor\[B, 4\]"):
            fn(x, torch.zeros(B, C, dtype=torch.long))
        with pytest.raises(ValueError, match="rows for a batch"):
            fn(x, torch.randn(B + 1, C))
    # unconditional flows ignore a context
    fu = _flow(spec, "none", torch.float32, std=STD32)
    torch.testing.assert_close(fu(x, torch.randn(B, C))[0], fu(x)[0], rtol=0, atol=0)


def test_make_involution_matches_build_flow_option():
    torch.manual_seed(0)
    a = build_flow({"name": "affine_coupling", "involution": "swap"}, dim=D)
    torch.manual_seed(0)
    b = make_involution(build_flow("affine_coupling", dim=D), sigma="swap")
    perturb(a, std=0.3, seed=1)
    perturb(b, std=0.3, seed=1)
    x = torch.randn(B, D)
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)


def test_build_flow_errors():
    with pytest.raises(ValueError, match="could not resolve flow 'nope' among choices"):
        build_flow("nope", dim=4)
    with pytest.raises(ValueError, match="flow 'affine': unknown option 'bogus'; "
                       "accepted options: scale_clamp"):
        build_flow({"name": "affine", "bogus": 1}, dim=4)
    with pytest.raises(ValueError, match="at most one"):
        build_flow("affine", dim=4, num_contexts=2, context_dim=3)
    with pytest.raises(ValueError, match="sigma"):
        build_flow({"name": "affine", "involution": "nope"}, dim=4)
