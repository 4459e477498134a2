"""The same Smooth L1 loss on NumPy, and on JAX and torch when they are installed.

Run: ``python examples/quickstart.py``
"""

import importlib.util

import numpy as np

import smoothl1

x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
y = np.zeros_like(x)

print("NumPy  loss:", smoothl1.smooth_l1(x, y, beta=1.0))
print("NumPy  grad:", smoothl1.smooth_l1_grad(x, y, beta=1.0))
print("Huber (delta=2), per element:", smoothl1.huber(x, y, delta=2.0, reduction="none"))

if importlib.util.find_spec("jax"):
    import jax
    import jax.numpy as jnp

    loss = jax.jit(smoothl1.smooth_l1, static_argnames=("beta", "reduction"))
    print("JAX    loss:", loss(jnp.asarray(x), jnp.asarray(y), beta=1.0))

if importlib.util.find_spec("torch"):
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = smoothl1.SmoothL1Loss(beta=1.0)
    print("torch  loss:", loss_fn(tx, ty), "  torch's own:", torch.nn.SmoothL1Loss()(tx, ty))
