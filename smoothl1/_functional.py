r"""The public loss functions: Smooth L1 and Huber, their gradients, and both at once."""

from __future__ import annotations

from . import _backends
from ._compat import Array
from ._request import Request, request
from ._validation import Reduction

__all__ = [
    "huber",
    "huber_grad",
    "huber_value_and_grad",
    "smooth_l1",
    "smooth_l1_grad",
    "smooth_l1_value_and_grad",
]


Axis = int | tuple[int, ...] | None


def _array(req: Request, param: object) -> object:
    """The array threshold to pass on, or ``None`` where it is a number (in ``req``)."""
    return param if req.per_element else None


def smooth_l1(
    input: Array,
    target: Array,
    beta: float = 1.0,
    reduction: Reduction = "mean",
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Array:
    r"""Smooth L1 loss, number for number as ``torch.nn.functional.smooth_l1_loss``.

    With :math:`d = \mathrm{input} - \mathrm{target}` (broadcast) and :math:`z = |d|`,
    the elementwise loss is

    .. math::

        \ell_\beta(d) = \begin{cases}
            \dfrac{0.5\, z^2}{\beta} & \text{if } z < \beta, \\[4pt]
            z - 0.5\,\beta & \text{otherwise,}
        \end{cases}

    and :math:`\beta = 0` gives the L1 loss :math:`z`.

    Parameters
    ----------
    input, target : array
        Real floating-point arrays of one array library (NumPy, CuPy, torch, JAX,
        dask, array-api-strict, ...) whose shapes broadcast together.  A
        ``UserWarning`` (torch's) is issued when the shapes differ.
    beta : float or array, default 1.0
        Where the loss turns from quadratic to linear: a Python number
        :math:`\ge 0` (``inf`` allowed; static under ``jax.jit``), or an array of
        the inputs' library that broadcasts to the loss's shape without enlarging
        it: a threshold per element (per feature, ...), traced under ``jax.jit``
        and differentiable by torch and JAX.  Negative or NaN elements give NaN
        there (values are not read).
    reduction : {'mean', 'sum', 'none', 'weighted_mean'}, default 'mean'
        ``'mean'`` divides the (weighted) sum by the number of elements reduced, as
        torch does (also with ``weight``, like ``F.huber_loss(weight=...)``);
        ``'weighted_mean'`` divides it by the sum of the broadcast weights instead
        (NaN where that sum is 0).
    weight : array or float, optional
        Per-element weights, broadcastable to the loss's shape without enlarging
        it: boolean masks, integers and floats are accepted and used in the working
        precision; they do not change the result dtype. Values are not checked
        (negative weights contribute negatively), since that would need to read
        array values.
    axis : int or tuple of int, optional
        Axes of the broadcast loss to reduce (negative axes count from the end);
        default all.  Not allowed with ``'none'``.
    keepdims : bool, default False
        Keep the reduced axes with size 1.

    Returns
    -------
    array
        Of dtype ``result_type(input, target)``, in the input's library and on its
        device: the broadcast shape for ``'none'``, else the broadcast shape reduced
        over ``axis`` (a 0-d array by default).

    Raises
    ------
    TypeError
        If an argument is not an array, the arrays come from different libraries,
        a dtype is not real floating-point, or ``beta`` is not a real number.
    ValueError
        If ``beta`` is negative or NaN, ``reduction`` is unknown, ``axis`` is out of
        range, or the shapes of ``input``, ``target``, ``weight`` and an array
        ``beta`` do not broadcast.

    Notes
    -----
    float32 and float64 elementwise results are bit-identical to torch's CPU
    kernel except where torch's intermediate :math:`0.5 z^2` overflows or
    underflows: there the exact value is returned.  Reductions are within a few
    ulps of torch's (summed in another order: in float64 blocks on NumPy and CPU
    torch tensors).  float16 and bfloat16 are computed in float32 and rounded
    once; reductions accumulate in float32 at least.  Empty input gives NaN for
    ``'mean'`` and 0 for ``'sum'``.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import smooth_l1
    >>> x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    >>> smooth_l1(x, np.zeros(7))
    array(0.89285714)
    >>> smooth_l1(x, np.zeros(7), beta=2.0, reduction="none")
    array([2.    , 0.25  , 0.0625, 0.    , 0.0625, 0.25  , 2.    ])

    Per-sample losses over the feature axis, with padding masked out:

    >>> pred, true = np.array([[1.0, 2.0, 9.0], [0.5, 0.0, 0.0]]), np.zeros((2, 3))
    >>> mask = np.array([[True, True, False], [True, False, False]])
    >>> smooth_l1(pred, true, weight=mask, reduction="weighted_mean", axis=-1)
    array([1.   , 0.125])
    """
    req = request("smooth_l1", "smooth_l1", beta, reduction, axis, keepdims)
    return _backends.loss(req, input, target, weight, _array(req, beta))


def smooth_l1_grad(
    input: Array,
    target: Array,
    beta: float = 1.0,
    reduction: Reduction = "mean",
    grad_output: Array | float | None = None,
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Array:
    r"""Gradient of :func:`smooth_l1` with respect to ``input``.

    .. math::

        \frac{\partial \ell_\beta}{\partial d} = \begin{cases}
            d / \beta & \text{if } |d| < \beta, \\
            \operatorname{sign}(d) & \text{otherwise,}
        \end{cases}

    times ``grad_output``, divided by the number of elements for ``'mean'``, and
    summed over broadcast dimensions back to ``input``'s shape.  For
    :math:`\beta = 0` it is :math:`\operatorname{sign}(d)`: 0 at :math:`d = 0`, as
    torch, and NaN at NaN (torch gives 0 there).  The gradient with respect to
    ``target`` is the negation, summed to ``target``'s shape.

    Parameters
    ----------
    input, target, beta, reduction
        As for :func:`smooth_l1`.
    grad_output : array or float, optional
        The upstream cotangent, broadcastable to the shape of the result (a scalar
        for the default full reductions).  Default: ones.
    weight, axis, keepdims
        As for :func:`smooth_l1`.

    Returns
    -------
    array
        ``input``'s shape and dtype, in its library and on its device.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import smooth_l1_grad
    >>> x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    >>> smooth_l1_grad(x, np.zeros(7), reduction="sum")
    array([-1. , -1. , -0.5,  0. ,  0.5,  1. ,  1. ])
    """
    req = request("smooth_l1_grad", "smooth_l1", beta, reduction, axis, keepdims,
                   value=False, grad=True)
    return _backends.evaluate(req, input, target, weight, grad_output, _array(req, beta))[1]


def smooth_l1_value_and_grad(
    input: Array,
    target: Array,
    beta: float = 1.0,
    reduction: Reduction = "mean",
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> tuple[Array, Array]:
    """:func:`smooth_l1` and :func:`smooth_l1_grad` in one pass, sharing the work.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import smooth_l1_value_and_grad
    >>> loss, grad = smooth_l1_value_and_grad(np.array([0.5, 2.0]), np.zeros(2))
    >>> loss, grad
    (array(0.8125), array([0.25, 0.5 ]))
    """
    req = request("smooth_l1_value_and_grad", "smooth_l1", beta, reduction, axis, keepdims,
                   grad=True)
    return _backends.evaluate(req, input, target, weight, None, _array(req, beta))


def huber(
    input: Array,
    target: Array,
    delta: float = 1.0,
    reduction: Reduction = "mean",
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Array:
    r"""Huber loss, number for number as ``torch.nn.functional.huber_loss``.

    .. math::

        h_\delta(d) = \begin{cases}
            0.5\, z^2 & \text{if } z < \delta, \\
            \delta\,(z - 0.5\,\delta) & \text{otherwise,}
        \end{cases}
        \qquad h_\delta = \delta \cdot \ell_{\beta=\delta}.

    Parameters
    ----------
    input, target : array
        As for :func:`smooth_l1`.
    delta : float or array, default 1.0
        A Python number :math:`> 0` (``inf`` allowed; static under ``jax.jit``),
        or an array as ``beta`` of :func:`smooth_l1` (elements :math:`\le 0` or
        NaN give NaN there).
    reduction : {'mean', 'sum', 'none', 'weighted_mean'}, default 'mean'
        As for :func:`smooth_l1`.
    weight, axis, keepdims
        As for :func:`smooth_l1`.

    Returns
    -------
    array
        As for :func:`smooth_l1`.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import huber
    >>> huber(np.array([0.5, 3.0]), np.zeros(2), delta=2.0, reduction="none")
    array([0.125, 4.   ])
    """
    req = request("huber", "huber", delta, reduction, axis, keepdims)
    return _backends.loss(req, input, target, weight, _array(req, delta))


def huber_grad(
    input: Array,
    target: Array,
    delta: float = 1.0,
    reduction: Reduction = "mean",
    grad_output: Array | float | None = None,
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Array:
    r"""Gradient of :func:`huber` with respect to ``input``.

    .. math::

        \frac{\partial h_\delta}{\partial d} = \begin{cases}
            d & \text{if } |d| < \delta, \\
            \delta \operatorname{sign}(d) & \text{otherwise.}
        \end{cases}

    ``grad_output``, the mean's division and the broadcast sum-back are as for
    :func:`smooth_l1_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import huber_grad
    >>> huber_grad(np.array([0.5, 3.0]), np.zeros(2), delta=2.0, reduction="sum")
    array([0.5, 2. ])
    """
    req = request("huber_grad", "huber", delta, reduction, axis, keepdims,
                   value=False, grad=True)
    return _backends.evaluate(req, input, target, weight, grad_output, _array(req, delta))[1]


def huber_value_and_grad(
    input: Array,
    target: Array,
    delta: float = 1.0,
    reduction: Reduction = "mean",
    *,
    weight: Array | float | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> tuple[Array, Array]:
    """:func:`huber` and :func:`huber_grad` in one pass, sharing the work.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import huber_value_and_grad
    >>> huber_value_and_grad(np.array([0.5, 3.0]), np.zeros(2), reduction="sum")
    (array(2.625), array([0.5, 1. ]))
    """
    req = request("huber_value_and_grad", "huber", delta, reduction, axis, keepdims,
                   grad=True)
    return _backends.evaluate(req, input, target, weight, None, _array(req, delta))
