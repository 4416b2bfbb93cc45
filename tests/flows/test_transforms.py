"""Single transforms: the math each docstring states, variants checked against each other
(table row r == unconditional transform with that row's parameters), the spline's guarantees."""

from __future__ import annotations

import math

import pytest
import torch

from gnn_inn.flows import (
    AffineCoupling,
    ElementwiseAffine,
    Householder,
    Involution,
    LULinear,
    Permutation,
    PlaneRotation,
    SequentialFlow,
    SplineCoupling,
    Translation,
    rational_quadratic_spline,
    soft_clamp,
)
from helpers import perturb

D = 6
F64 = torch.float64


def _jac(f, x):
    return torch.autograd.functional.jacobian(lambda u: f(u[None])[0][0], x)


@pytest.mark.parametrize("cls,kw", [(Translation, {}), (ElementwiseAffine, {}),
                                    (PlaneRotation, {}), (Householder, {}),
                                    (LULinear, {"permutation": "identity"})])
def test_table_row_equals_unconditional_transform(cls, kw):
    table = perturb(cls(dim=D, num_contexts=3, **kw).double(), std=0.5, seed=0)
    x = torch.randn(4, D, dtype=F64)
    for r in range(3):
        single = cls(dim=D, **kw).double()
        with torch.no_grad():
            single.params.param.copy_(table.params.table[r])
        ids = torch.full((4,), r)
        for a, b in zip(table(x, ids), single(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cls", [Translation, ElementwiseAffine, PlaneRotation, LULinear])
def test_context_hypernetwork_starts_at_identity_for_every_context(cls):
    f = cls(dim=D, context_dim=3).double()
    if cls is LULinear:
        f = LULinear(dim=D, context_dim=3, permutation="identity").double()
    if cls is PlaneRotation:
        f = PlaneRotation(dim=D, context_dim=3, init_angles="zero").double()
    x = torch.randn(5, D, dtype=F64)
    y, ld = f(x, torch.randn(5, 3, dtype=F64) * 10)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-13)
    assert ld.abs().max() == 0


def test_plane_rotation_is_rotate_as_complex_multiplication():
    f = PlaneRotation(dim=D).double()
    theta = torch.tensor([0.3, -1.2, 2.5], dtype=F64)
    with torch.no_grad():
        f.params.param.copy_(theta)
    x = torch.randn(4, D, dtype=F64)
    y, ld = f(x)
    z = torch.complex(x[:, :3], x[:, 3:]) * torch.exp(1j * theta)
    torch.testing.assert_close(y, torch.cat([z.real, z.imag], 1))
    assert ld.abs().max() == 0


def test_plane_rotation_odd_dim_keeps_last_coordinate():
    f = perturb(PlaneRotation(dim=5).double(), std=0.5, seed=0)
    x = torch.randn(3, 5, dtype=F64)
    assert torch.equal(f(x)[0][:, 4], x[:, 4])


def test_householder_is_orthogonal_and_starts_at_identity():
    f = Householder(dim=D, num_reflections=4).double()
    x = torch.randn(3, D, dtype=F64)
    torch.testing.assert_close(f(x)[0], x, rtol=0, atol=1e-13)
    perturb(f, std=0.5, seed=0)
    j = _jac(f, x[0])
    torch.testing.assert_close(j.T @ j, torch.eye(D, dtype=F64))
    with pytest.raises(ValueError, match="num_reflections"):
        Householder(dim=D, num_reflections=0)


def test_elementwise_affine_scales_are_soft_clamped():
    f = ElementwiseAffine(dim=D, scale_clamp=2.0).double()
    with torch.no_grad():
        f.params.param[:D] = 100.0
    _, ld = f(torch.zeros(1, D, dtype=F64))
    assert 0 < ld.item() <= 2.0 * D
    assert soft_clamp(torch.tensor(1e6), 3.0) <= 3.0


def test_lu_linear_matrix_form_and_learned_permutation():
    f = LULinear(dim=D, permutation="random", seed=3, bias=False).double()
    p = Permutation(dim=D, seed=3).double()
    x = torch.randn(4, D, dtype=F64)
    # at initialisation the LU layer is exactly the fixed permutation with the same seed
    torch.testing.assert_close(f(x)[0], p(x)[0], rtol=0, atol=0)
    perturb(f, std=0.3, seed=0)
    n = D * (D - 1) // 2
    q = f.params.param.detach()
    L = torch.eye(D, dtype=F64)
    L[f.tril[0], f.tril[1]] = q[:n]
    s = soft_clamp(q[2 * n: 2 * n + D], f.scale_clamp)
    U = torch.diag(torch.exp(s))
    U[f.triu[0], f.triu[1]] = q[n: 2 * n]
    W = torch.eye(D, dtype=F64)[f.perm] @ L @ U  # W = P L (U + diag(e^s))
    y, ld = f(x)
    torch.testing.assert_close(y, x @ W.T)
    torch.testing.assert_close(ld, torch.full((4,), float(s.sum()), dtype=F64))
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(W).logabsdet)


def test_permutation_seeded_buffers():
    a, b = Permutation(dim=D, seed=5), Permutation(dim=D, seed=5)
    assert torch.equal(a.perm, b.perm) and "perm" in a.state_dict()
    x = torch.randn(3, D)
    assert torch.equal(a.inverse(a(x)[0])[0], x)
    assert torch.equal(Permutation(dim=4, kind="reverse")(torch.arange(4.)[None])[0],
                       torch.tensor([[3., 2., 1., 0.]]))
    with pytest.raises(ValueError, match="kind"):
        Permutation(dim=4, kind="nope")


# ------------------------------------------------------------------ spline
def _spline_params(n, K, sigma, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, K, generator=g, dtype=dtype) * sigma,
            torch.randn(n, K, generator=g, dtype=dtype) * sigma,
            torch.randn(n, K - 1, generator=g, dtype=dtype) * sigma)


def test_spline_zero_parameters_is_identity():
    x = torch.linspace(-6, 6, 101, dtype=F64)
    w, h, d = (torch.zeros(101, k, dtype=F64) for k in (8, 8, 7))
    y, ld = rational_quadratic_spline(x, w, h, d, bound=5.0, inverse=False)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-13)
    torch.testing.assert_close(ld, torch.zeros_like(ld), rtol=0, atol=1e-13)


@pytest.mark.parametrize("sigma", [1.0, 10.0, 100.0])
def test_spline_round_trip_for_any_logits_and_bounded_slopes(sigma):
    """The min-slope parametrisation keeps the inverse exact whatever the network outputs:
    float32 ≤ 1e-4 absolute on [-B, B] even for logits ~ N(0, 100²)."""
    n, K, bound, m = 4000, 8, 5.0, 0.2
    for dtype, tol in ((torch.float32, 1e-4), (F64, 1e-10)):
        w, h, d = _spline_params(n, K, sigma, dtype)
        x = (torch.rand(n, dtype=dtype) * 2 - 1) * bound
        y, ld = rational_quadratic_spline(x, w, h, d, bound=bound, inverse=False, min_slope=m)
        back, ld_inv = rational_quadratic_spline(y, w, h, d, bound=bound, inverse=True,
                                                 min_slope=m)
        assert (back - x).abs().max() <= tol, (dtype, (back - x).abs().max())
        assert (y.abs() <= bound).all()
        if dtype is F64:
            torch.testing.assert_close(ld_inv, -ld, rtol=0, atol=1e-10)
            slope = ld.exp()
            lo = 2 * m**3 / (1 + m**2)  # the bound stated in the docstring
            assert slope.min() >= lo * (1 - 1e-9) and slope.max() <= (1 + 1e-9) / lo


def test_spline_tails_are_bit_exact_identity_with_finite_gradients():
    w, h, d = (t.requires_grad_(True) for t in _spline_params(6, 8, 3.0, torch.float32))
    x = torch.tensor([-1e6, -1e3, -5.0, 5.0, 1e3, 1e6], requires_grad=True)
    for inverse in (False, True):
        y, ld = rational_quadratic_spline(x, w, h, d, bound=5.0, inverse=inverse)
        assert torch.equal(y, x) and torch.equal(ld, torch.zeros_like(ld))
        (y.sum() + ld.sum()).backward()
        assert all(torch.isfinite(t.grad).all() for t in (x, w, h, d))


def test_spline_monotone_and_continuous_at_the_bound():
    w, h, d = (t[:1].expand(2001, -1) for t in _spline_params(1, 8, 2.0, F64))
    x = torch.linspace(-5.5, 5.5, 2001, dtype=F64)
    y, _ = rational_quadratic_spline(x, w, h, d, bound=5.0, inverse=False)
    assert (y.diff() > 0).all()
    eps = torch.tensor([-5 - 1e-9, -5 + 1e-9, 5 - 1e-9, 5 + 1e-9], dtype=F64)
    ye, _ = rational_quadratic_spline(eps, w[:4], h[:4], d[:4], bound=5.0, inverse=False)
    torch.testing.assert_close(ye, eps, rtol=0, atol=1e-7)


def test_spline_and_coupling_argument_errors():
    w, h, d = _spline_params(2, 4, 1.0, F64)
    with pytest.raises(ValueError, match="min_slope"):
        rational_quadratic_spline(torch.zeros(2, dtype=F64), w, h, d, bound=5.0,
                                  inverse=False, min_slope=0.0)
    with pytest.raises(ValueError, match="min_slope"):
        SplineCoupling(dim=D, min_slope=2.0)
    with pytest.raises(ValueError, match="dim ≥ 2"):
        AffineCoupling(dim=1)
    with pytest.raises(ValueError, match="input_bound"):
        AffineCoupling(dim=D, input_bound=0.0)


def test_coupling_passes_first_half_and_conditioner_is_squashed():
    f = perturb(AffineCoupling(dim=D).double(), std=0.5, seed=0)
    x = torch.randn(4, D, dtype=F64) * 1e3
    y, _ = f(x)
    assert torch.equal(y[:, :3], x[:, :3])
    # far outside input_bound the conditioner saturates: scale and shift barely move with x_a
    x2 = x.clone()
    x2[:, :3] *= 1.01
    y2, _ = f(x2)
    assert (y2[:, 3:] - y[:, 3:]).abs().max() < 1e-2 * y[:, 3:].abs().max()


# ------------------------------------------------------------------ composition / involution
def test_sequential_flow_composes_and_inverts_in_reverse():
    a = perturb(ElementwiseAffine(dim=D).double(), std=0.5, seed=1)
    b = perturb(PlaneRotation(dim=D).double(), std=0.5, seed=2)
    f = SequentialFlow(a, b)
    x = torch.randn(3, D, dtype=F64)
    y, ld = f(x)
    ya, la = a(x)
    yb, lb = b(ya)
    torch.testing.assert_close(y, yb)
    torch.testing.assert_close(ld, la + lb)
    back, ldi = f.inverse(y)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(ldi, -ld)
    assert len(f) == 2 and f[1] is b
    with pytest.raises(ValueError, match="at least one"):
        SequentialFlow()


@pytest.mark.parametrize("sigma", ["sign", "swap"])
def test_involution_of_any_flow(sigma):
    g = perturb(SequentialFlow(ElementwiseAffine(dim=D), Householder(dim=D)).double(),
                std=0.5, seed=0)
    f = Involution(g, sigma=sigma)
    x = torch.randn(5, D, dtype=F64)
    y, ld = f(x)
    back, ld2 = f(y)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(ld2, -ld)
    assert torch.equal(f.inverse(x)[0], y)


def test_involution_argument_errors():
    with pytest.raises(ValueError, match="sigma"):
        Involution(Translation(dim=4), sigma="nope")
    with pytest.raises(ValueError, match="even dim"):
        Involution(Translation(dim=5), sigma="swap")


def test_repr_is_compact():
    assert repr(Translation(dim=4, num_contexts=3)) == "Translation(dim=4, num_contexts=3)"
    r = repr(SplineCoupling(dim=4, context_dim=2))
    assert "\n" not in r and r.startswith("SplineCoupling(dim=4") and "min_slope=0.2" in r
    s = repr(SequentialFlow(Translation(dim=4), PlaneRotation(dim=4)))
    assert s.count("\n") == 3


def test_soft_clamp_is_identity_near_zero():
    x = torch.tensor([1e-4, -1e-4], dtype=F64)
    torch.testing.assert_close(soft_clamp(x, 3.0), x, rtol=1e-8, atol=0)
    assert math.isclose(float(soft_clamp(torch.tensor(-1e9), 2.0)), -2.0)
