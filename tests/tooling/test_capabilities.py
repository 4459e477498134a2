"""Every capability declared in ``tests/capabilities.py`` (the docs' table), exercised."""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import numpy as np
import pytest

import smoothl1

from .._backends import backend_namespace, to_numpy
from ..capabilities import CAPABILITIES, COLUMNS, NEEDS_GPU

BETA = 0.7
_X = np.array([-3.0, -0.5, -0.2, 0.0, 0.1, 0.6, 0.69, 0.71, 2.5, 40.0])
_Y = np.array([0.5, 0.1, 0.0, 0.0, -0.3, 0.0, 0.0, 0.0, 1.0, -1.0])


def _reference():
    """float64 textbook values: mean loss and its gradient with respect to input."""
    d = _X - _Y
    z = np.abs(d)
    loss = np.where(z < BETA, 0.5 * z * z / BETA, z - 0.5 * BETA).mean()
    grad = np.where(z < BETA, d / BETA, np.sign(d)) / d.size
    return loss, grad


def _gpu_skip(what: str):
    pytest.skip(f"{what}: no GPU on this machine (the capability is checked where there is one)")


def _forward(backend: str) -> None:
    xp = backend_namespace(backend)
    loss = smoothl1.smooth_l1(xp.asarray(_X), xp.asarray(_Y), BETA)
    np.testing.assert_allclose(to_numpy(loss), _reference()[0], rtol=1e-15)


def _grad(backend: str) -> None:
    xp = backend_namespace(backend)
    grad = smoothl1.smooth_l1_grad(xp.asarray(_X), xp.asarray(_Y), BETA)
    np.testing.assert_allclose(to_numpy(grad), _reference()[1], rtol=1e-15)


def _torch_autodiff() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor(_X, requires_grad=True)
    y = torch.tensor(_Y)
    (g,) = torch.autograd.grad(smoothl1.smooth_l1(x, y, BETA), x)
    np.testing.assert_allclose(g.numpy(), _reference()[1], rtol=1e-15)
    g_func = torch.func.grad(lambda a: smoothl1.smooth_l1(a, y, BETA))(x.detach())
    np.testing.assert_array_equal(g_func.numpy(), g.numpy())


def _jax_autodiff() -> None:
    jax = pytest.importorskip("jax")
    x, y = jax.numpy.asarray(_X), jax.numpy.asarray(_Y)
    g = jax.grad(smoothl1.smooth_l1)(x, y, BETA)
    np.testing.assert_allclose(np.asarray(g), _reference()[1], rtol=1e-15)
    _, tangent = jax.jvp(lambda a: smoothl1.smooth_l1(a, y, BETA), (x,), (jax.numpy.ones_like(x),))
    np.testing.assert_allclose(float(tangent), _reference()[1].sum(), rtol=1e-14)
    h = jax.hessian(smoothl1.smooth_l1)(x, y, BETA)
    z = np.abs(_X - _Y)
    np.testing.assert_allclose(np.diag(np.asarray(h)), (z < BETA) / BETA / z.size, rtol=1e-15)


def _torch_compiled() -> None:
    torch = pytest.importorskip("torch")
    x, y = torch.tensor(_X, requires_grad=True), torch.tensor(_Y)
    compiled = torch.compile(lambda a, b: smoothl1.smooth_l1(a, b, BETA), fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, inside dynamo
        loss = compiled(x, y)
        loss.backward()
    np.testing.assert_allclose(loss.item(), _reference()[0], rtol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), _reference()[1], rtol=1e-15)


def _jax_compiled() -> None:
    jax = pytest.importorskip("jax")
    x, y = jax.numpy.asarray(_X), jax.numpy.asarray(_Y)
    loss = jax.jit(smoothl1.smooth_l1, static_argnums=2)(x, y, BETA)
    np.testing.assert_allclose(float(loss), _reference()[0], rtol=1e-15)
    rows = jax.vmap(lambda a, b: smoothl1.smooth_l1(a, b, BETA))(x.reshape(2, 5), y.reshape(2, 5))
    assert rows.shape == (2,)
    np.testing.assert_allclose(float(rows.mean()), _reference()[0], rtol=1e-15)


def _torch_lazy() -> None:
    torch = pytest.importorskip("torch")
    x = torch.empty(1000, 3, device="meta")
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, x, BETA)
    assert loss.device.type == grad.device.type == "meta"
    assert loss.shape == ()
    assert grad.shape == (1000, 3)


def _jax_lazy() -> None:
    jax = pytest.importorskip("jax")
    spec = jax.ShapeDtypeStruct((1000, 3), jax.numpy.float32)
    out = jax.eval_shape(lambda a, b: smoothl1.smooth_l1_value_and_grad(a, b, BETA), spec, spec)
    assert out[0].shape == ()
    assert out[1].shape == (1000, 3)
    jaxpr = jax.make_jaxpr(lambda a, b: smoothl1.smooth_l1(a, b, BETA))(spec, spec)
    assert "custom_jvp_call" in str(jaxpr)


def _dask_lazy() -> None:
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")

    def no_compute(*args, **kwargs):
        raise AssertionError("a dask compute while building the graph")

    x, y = da.from_array(_X, chunks=3), da.from_array(_Y, chunks=4)
    with dask.config.set(scheduler=no_compute):
        loss, grad = smoothl1.smooth_l1_value_and_grad(x, y, BETA)
    assert isinstance(loss, da.Array)
    assert isinstance(grad, da.Array)
    np.testing.assert_allclose(loss.compute(), _reference()[0], rtol=1e-15)


def _torch_gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        _gpu_skip("torch CUDA")
    x = torch.tensor(_X, device="cuda", requires_grad=True)
    loss = smoothl1.smooth_l1(x, torch.tensor(_Y, device="cuda"), BETA)
    loss.backward()
    assert loss.device.type == x.grad.device.type == "cuda"
    np.testing.assert_allclose(x.grad.cpu().numpy(), _reference()[1], rtol=1e-15)


def _jax_gpu() -> None:
    jax = pytest.importorskip("jax")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        _gpu_skip("JAX GPU")
    x = jax.device_put(_X, gpus[0])
    loss = smoothl1.smooth_l1(x, jax.device_put(_Y, gpus[0]), BETA)
    assert loss.devices() == {gpus[0]}
    np.testing.assert_allclose(float(loss), _reference()[0], rtol=1e-15)


def _ndonnx_model(dtype_name: str = "float64"):
    """smooth_l1_value_and_grad on symbolic ndonnx arrays, built as an ONNX model."""
    ndx = pytest.importorskip("ndonnx")
    dtype = getattr(ndx, dtype_name)
    x, y = ndx.argument(shape=("N",), dtype=dtype), ndx.argument(shape=("N",), dtype=dtype)
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, y, BETA)
    for out in (loss, grad):  # symbolic: there are no values to read
        with pytest.raises(ValueError, match="no propagated value"):
            out.unwrap_numpy()
    return ndx.build({"input": x, "target": y}, {"loss": loss, "grad": grad})


def _ndonnx_compiled() -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _ndonnx_model()
    onnx.checker.check_model(model, full_check=True)
    want_loss, want_grad = smoothl1.smooth_l1_value_and_grad(_X, _Y, BETA)
    exact = ort.SessionOptions()
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    loss, grad = ort.InferenceSession(model.SerializeToString(), exact).run(
        ["loss", "grad"], {"input": _X, "target": _Y})
    assert loss == want_loss  # NumPy's numbers, from onnxruntime
    np.testing.assert_array_equal(grad, want_grad)
    # onnxruntime's default optimizations rewrite the gradient's division: within 1 ulp
    loss, grad = ort.InferenceSession(model.SerializeToString()).run(
        ["loss", "grad"], {"input": _X, "target": _Y})
    assert loss == want_loss
    np.testing.assert_array_max_ulp(grad, want_grad, maxulp=1)
    np.testing.assert_allclose(loss, _reference()[0], rtol=1e-15)


def _ndonnx_lazy() -> None:
    model = _ndonnx_model("float32")
    inputs = [i.name for i in model.graph.input]
    assert inputs == ["input", "target"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N"]  # any length, decided when it runs


def _cubed_lazy() -> None:
    cubed = pytest.importorskip("cubed")
    xp = pytest.importorskip("cubed.array_api")
    x, y = xp.asarray(_X, chunks=3), xp.asarray(_Y, chunks=4)
    with cubed.raise_if_computes():
        loss, grad = smoothl1.smooth_l1_value_and_grad(x, y, BETA)
    assert isinstance(loss, cubed.Array)
    assert isinstance(grad, cubed.Array)
    loss, grad = cubed.compute(loss, grad)
    np.testing.assert_allclose(loss, _reference()[0], rtol=1e-15)
    np.testing.assert_allclose(grad, _reference()[1], rtol=1e-15)


def _numpy_masks() -> None:
    x = np.ma.masked_array(_X, mask=_X > 30)  # the 40.0
    loss = smoothl1.smooth_l1(x, _Y, BETA)
    assert loss == smoothl1.smooth_l1(_X[:-1], _Y[:-1], BETA)
    assert smoothl1.smooth_l1_grad(x, _Y, BETA).mask.tolist() == [False] * 9 + [True]


def _dask_masks() -> None:
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.ma.masked_array(_X, mask=_X > 30), chunks=4, asarray=False)
    loss = smoothl1.smooth_l1(x, da.from_array(_Y, chunks=4), BETA).compute()
    assert loss == smoothl1.smooth_l1(_X[:-1], _Y[:-1], BETA)


def _marray_masks() -> None:
    marray = pytest.importorskip("marray")
    namespaces = [marray.numpy]
    if importlib.util.find_spec("torch") is not None:  # masks over another library's arrays
        namespaces.append(marray.masked_namespace(importlib.import_module(
            "array_api_compat.torch")))
    for xp in namespaces:
        x = xp.asarray(xp.asarray(_X).data, mask=_X > 30)
        y = xp.asarray(xp.asarray(_Y).data)
        loss = smoothl1.smooth_l1(x, y, BETA)
        assert not bool(loss.mask)
        assert to_numpy(loss.data) == smoothl1.smooth_l1(_X[:-1], _Y[:-1], BETA)
        assert to_numpy(smoothl1.smooth_l1_grad(x, y, BETA).mask).tolist() == [False] * 9 + [True]


def _sparse_structure() -> None:
    sparse = pytest.importorskip("sparse")
    x, y = sparse.COO.from_numpy(_X), sparse.COO.from_numpy(_Y)
    none = smoothl1.smooth_l1(x, y, BETA, reduction="none")
    grad = smoothl1.smooth_l1_grad(x, y, BETA)
    for out in (none, grad):
        assert isinstance(out, sparse.COO)
        assert out.fill_value == 0
        assert out.nnz == 9  # the one element where x == y == 0 stays implicit
    np.testing.assert_array_equal(none.todense(), smoothl1.smooth_l1(_X, _Y, BETA, "none"))
    np.testing.assert_allclose(grad.todense(), _reference()[1], rtol=1e-15)


def _cupy(check):
    def run(backend: str) -> None:
        if importlib.util.find_spec("cupy") is None:
            _gpu_skip("CuPy is not installed")
        check(backend)  # backend_namespace skips when CuPy cannot run
    return run


CHECKS = {
    ("torch", "autodiff"): _torch_autodiff, ("jax", "autodiff"): _jax_autodiff,
    ("torch", "compiled"): _torch_compiled, ("jax", "compiled"): _jax_compiled,
    ("torch", "lazy"): _torch_lazy, ("jax", "lazy"): _jax_lazy, ("dask", "lazy"): _dask_lazy,
    ("torch", "gpu"): _torch_gpu, ("jax", "gpu"): _jax_gpu,
    ("cupy", "gpu"): lambda: _cupy(_grad)("cupy"),
    ("ndonnx", "compiled"): _ndonnx_compiled, ("ndonnx", "lazy"): _ndonnx_lazy,
    ("cubed", "lazy"): _cubed_lazy,
    ("numpy", "structure"): _numpy_masks, ("dask", "structure"): _dask_masks,
    ("marray", "structure"): _marray_masks, ("sparse", "structure"): _sparse_structure,
}


def _declared():
    for backend, row in CAPABILITIES.items():
        for column, value in row.items():
            if value is not None:
                yield pytest.param(backend, column, id=f"{backend}-{column}")


def test_declaration_is_complete():
    for backend, row in CAPABILITIES.items():
        assert set(row) == set(COLUMNS), backend
    assert {k for k in NEEDS_GPU} <= {(b, c) for b, r in CAPABILITIES.items() for c in r}
    declared = {(b, c) for b, r in CAPABILITIES.items() for c, v in r.items() if v}
    generic = {(b, c) for b, c in declared if c in ("forward", "grad")}
    assert declared - generic == set(CHECKS), "every special capability needs its check"


@pytest.mark.parametrize(("backend", "column"), list(_declared()))
def test_declared_capability_works(backend, column):
    check = CHECKS.get((backend, column))
    if check is not None:
        check()
    else:  # forward / grad on any backend
        (_forward if column == "forward" else _grad)(backend)
