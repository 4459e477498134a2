"""Smooth L1 on JAX arrays sharded across devices: a robust linear fit, data-parallel.

The rows of the data are split over every device (``NamedSharding`` on a 1-D
mesh); the parameters are replicated.  Under ``jax.jit`` each device computes the
loss and gradient of its own rows, and XLA adds the partial sums across devices
(an all-reduce): the data is never gathered onto one device.

Run::

    python examples/sharded_jax.py               # 4 simulated CPU devices
    python examples/sharded_jax.py --devices 8   # or on the GPUs/TPUs JAX finds, with --real

On a CPU-only machine the devices are simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count``, which must be set before
JAX starts; this script sets it for itself.  On several hosts, call
``jax.distributed.initialize()`` first and build the mesh over ``jax.devices()``:
nothing else changes.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Fit ``y = X w`` with outliers by gradient descent on the sharded Smooth L1 loss."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=4, help="simulated CPU devices")
    p.add_argument("--real", action="store_true", help="use the devices JAX finds as they are")
    p.add_argument("--rows", type=int, default=1 << 14)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    if not args.real:
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    import smoothl1

    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))  # split the rows over the devices
    replicated = NamedSharding(mesh, PartitionSpec())

    rng = np.random.default_rng(0)
    n = args.rows - args.rows % len(devices)
    true_w = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    X = rng.standard_normal((n, 3), dtype=np.float32)
    y = X @ true_w + 0.1 * rng.standard_normal(n, dtype=np.float32)
    y[rng.random(n) < 0.1] += 20.0  # 10 % gross outliers
    X, y = jax.device_put(X, rows), jax.device_put(y, rows)

    def loss(w: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
        return smoothl1.smooth_l1(X @ w, y, beta=1.0)

    @jax.jit
    def step(w: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, g = jax.value_and_grad(loss)(w, X, y)
        return w - 0.5 * g, value

    w = jax.device_put(jnp.zeros(3, dtype=jnp.float32), replicated)
    first = None
    for _ in range(args.steps):
        w, value = step(w, X, y)
        # one step at a time: on simulated CPU devices, steps queued behind each
        # other can starve the threads that the all-reduce waits for
        value.block_until_ready()
        first = value if first is None else first
    hlo = step.lower(w, X, y).compile().as_text()
    lstsq = np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]

    print(f"{len(devices)} devices; X {X.shape} sharded as {X.sharding.spec}")
    print(f"loss: {float(first):.4f} -> {float(value):.4f} after {args.steps} steps")
    print(f"Smooth L1 fit:     {np.round(np.asarray(w), 3)}  (true {true_w})")
    print(f"least squares fit: {np.round(lstsq, 3)}  (pulled by the outliers)")
    print(f"parameters stay {w.sharding.spec}; compiled step all-reduces across devices: "
          f"{'all-reduce' in hlo}; gathers the data: {'all-gather' in hlo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
