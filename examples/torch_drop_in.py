"""torch drop-in: ``torch.nn.SmoothL1Loss`` becomes ``smoothl1.nn.SmoothL1Loss``, same curve.

The same small network is trained twice from the same seed on the same data,
once with torch's loss and once with smoothl1's, each registered as the
model's ``criterion`` submodule (``smoothl1.nn.SmoothL1Loss`` is an
``nn.Module``: it moves with ``model.to(...)`` and appears in ``modules()``);
smoothl1 computes torch's elementwise values and gradients bit for bit (its
mean is summed in another order, within an ulp), so the two training curves
agree to float32 rounding.

Run::

    python examples/torch_drop_in.py
    python examples/torch_drop_in.py --steps 500
"""

from __future__ import annotations

import argparse
import sys

import torch

import smoothl1.nn


def train(loss_fn: torch.nn.Module, steps: int, seed: int = 0) -> list[float]:
    """Train a 1 -> 32 -> 1 network with SGD; return the loss after every step."""
    torch.manual_seed(seed)
    x = torch.linspace(-1, 1, 256).unsqueeze(1)
    y = torch.sin(3 * x) + 0.05 * torch.randn_like(x)
    y[torch.rand_like(y) < 0.05] += 5.0  # outliers
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    model.criterion = loss_fn  # a submodule, as training scripts register it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.criterion(model[:3](x), y)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history


def main(argv: list[str] | None = None) -> int:
    """Train with both losses and compare the curves."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args(argv)
    theirs = train(torch.nn.SmoothL1Loss(beta=0.5), args.steps)
    ours = train(smoothl1.nn.SmoothL1Loss(beta=0.5), args.steps)  # the only line that changes
    print("step  torch.nn.SmoothL1Loss  smoothl1.nn.SmoothL1Loss")
    for i in sorted({0, 1, args.steps // 10, args.steps // 2, args.steps - 1}):
        print(f"{i:>4}  {theirs[i]:.7f}             {ours[i]:.7f}")
    worst = max(abs(a - b) / abs(a) for a, b in zip(theirs, ours, strict=True))
    print(f"largest relative difference between the two training curves (loss): {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
