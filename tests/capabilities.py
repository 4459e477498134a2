"""What each backend can do: one declaration, checked cell by cell and rendered in the docs.

``tests/tooling/test_capabilities.py`` turns every non-empty cell into a test that
exercises it for real; ``docs/conf.py`` renders this table as the Backends page's
capability table.  To claim a capability, add it here: its test then has to pass.
A cell is ``None`` where the backend has no such thing.
"""

from __future__ import annotations

#: Column key -> heading in the documentation.
COLUMNS: dict[str, str] = {
    "forward": "loss",
    "grad": "analytic gradient",
    "autodiff": "autodiff",
    "compiled": "jit / compile",
    "lazy": "lazy / traced",
    "gpu": "GPU",
    "structure": "masks / sparsity",
}

#: Backend -> column -> what works (short text), or None.
CAPABILITIES: dict[str, dict[str, str | None]] = {
    "numpy": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None, "lazy": None,
        "gpu": None, "structure": "numpy.ma masks",
    },
    "array_api_strict": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None, "lazy": None,
        "gpu": None, "structure": None,
    },
    "torch": {
        "forward": "yes", "grad": "yes", "autodiff": "autograd, torch.func",
        "compiled": "torch.compile", "lazy": "meta device", "gpu": "CUDA", "structure": None,
    },
    "jax": {
        "forward": "yes", "grad": "yes", "autodiff": "grad, jvp, hessian",
        "compiled": "jit, vmap", "lazy": "traced", "gpu": "GPU", "structure": None,
    },
    "dask": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None,
        "lazy": "task graph", "gpu": None, "structure": "masked chunks",
    },
    "cupy": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None, "lazy": None,
        "gpu": "CUDA", "structure": None,
    },
    "ndonnx": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": "ONNX model export",
        "lazy": "symbolic arrays", "gpu": None, "structure": None,
    },
    "sparse": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None, "lazy": None,
        "gpu": None, "structure": "COO in, COO out",
    },
    "marray": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None, "lazy": None,
        "gpu": None, "structure": "masks (over any library)",
    },
    "cubed": {
        "forward": "yes", "grad": "yes", "autodiff": None, "compiled": None,
        "lazy": "plan, bounded memory", "gpu": None, "structure": None,
    },
}

#: Cells that only a machine with a GPU can check (CI has none: they skip there).
NEEDS_GPU: set[tuple[str, str]] = {
    ("torch", "gpu"), ("jax", "gpu"), ("cupy", "forward"), ("cupy", "grad"), ("cupy", "gpu"),
}
