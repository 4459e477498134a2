"""torch forward+backward through smoothl1 against F.smooth_l1_loss, same process.

Run: ``python benchmarks/torch_autograd.py [--log2n 22] [--repeats 15]``

The contenders alternate round-robin and the script prints medians and the ratio;
these machines are noisy, so trust the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import smoothl1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log2n", type=int, default=22)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    n = 2**args.log2n
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * 2
    y = torch.randn(n, generator=g)

    def run(fn, **kw):
        leaf = x.detach().requires_grad_()
        start = time.perf_counter()
        fn(leaf, y, **kw).backward()
        return time.perf_counter() - start, leaf.grad

    contenders = {
        "torch F.smooth_l1_loss": lambda: run(torch.nn.functional.smooth_l1_loss, beta=1.0),
        "smoothl1.smooth_l1": lambda: run(smoothl1.smooth_l1, beta=1.0),
    }
    grads = {name: fn()[1] for name, fn in contenders.items()}  # warm up, and check
    reference = grads["torch F.smooth_l1_loss"]
    for name, grad in grads.items():
        assert torch.equal(grad, reference), f"{name}: gradient differs from torch's"
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            times[name].append(fn()[0])
    base = statistics.median(times["torch F.smooth_l1_loss"])
    print(f"forward+backward, N = 2^{args.log2n} float32, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print("| contender | median (ms) | ratio to torch |")
    print("|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m * 1e3:.2f} | {m / base:.2f} |")


if __name__ == "__main__":
    main()
