"""The public thread control and the pool's lifecycle (:mod:`smoothl1._threads`).

Hangs are tested in a subprocess with a timeout, so that a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import smoothl1

#: Large enough that two threads split it (PARALLEL_MIN elements, at least 4 groups of units).
N = 1 << 22


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:  # a hang is a failure, with what it printed
        pytest.fail(f"the child hung for {timeout} s; it printed {e.stdout!r} {e.stderr!r}")


@pytest.fixture
def two_threads():
    smoothl1.set_num_threads(2)
    yield
    smoothl1.set_num_threads(1)


def test_default_is_one_thread():
    assert smoothl1.get_num_threads() == 1


@pytest.mark.parametrize("n", [1, 2, 3, np.int64(2)])
def test_set_num_threads_takes_positive_integers(n, two_threads):
    smoothl1.set_num_threads(n)
    assert smoothl1.get_num_threads() == int(n)
    assert type(smoothl1.get_num_threads()) is int


@pytest.mark.parametrize(("n", "error", "match"), [
    (2.5, TypeError, "n must be an int, got float 2.5"),
    (True, TypeError, "n must be an int, got bool"),
    ("2", TypeError, "n must be an int, got str"),
    (None, TypeError, "n must be an int, got NoneType"),
    (0, ValueError, "n must be at least 1, got 0"),
    (-3, ValueError, "n must be at least 1, got -3"),
])
def test_set_num_threads_refuses_what_is_not_a_count(n, error, match):
    with pytest.raises(error, match=match):
        smoothl1.set_num_threads(n)
    # ... and the setting is untouched: later calls still work.
    assert smoothl1.get_num_threads() == 1
    assert smoothl1.smooth_l1(np.ones(N, "f4"), np.zeros(N, "f4")) == np.float32(0.5)


def test_every_thread_count_gives_the_same_bits(two_threads):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, N)).astype("f4")
    got = {}
    for n in (1, 2, 3):
        smoothl1.set_num_threads(n)
        got[n] = (smoothl1.smooth_l1(x, y).tobytes(), smoothl1.smooth_l1_grad(x, y).tobytes())
    assert got[1] == got[2] == got[3]


def test_changing_the_count_while_others_compute_fails_no_call(two_threads):
    x = np.full(N, 3.0, "f4")
    y = np.zeros(N, "f4")
    errors: list[BaseException] = []
    results: list[np.ndarray] = []
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                results.append(smoothl1.smooth_l1(x, y))
            except BaseException as e:
                errors.append(e)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for i in range(60):
        smoothl1.set_num_threads(2 + i % 2)
    stop.set()
    for w in workers:
        w.join()
    assert errors == []
    assert results
    assert all(r == np.float32(2.5) for r in results)


def test_a_forked_child_computes_instead_of_hanging():
    # Before: the child inherited the parent's pool object without its threads and waited forever.
    done = _python(f"""
        import multiprocessing as mp, numpy as np, smoothl1
        smoothl1.set_num_threads(2)
        x, y = np.ones({N}, "f4"), np.zeros({N}, "f4")
        assert smoothl1.smooth_l1(x, y) == 0.5          # the parent's pool now exists
        def child(q):
            q.put((float(smoothl1.smooth_l1(x, y)), smoothl1.smooth_l1_grad(x, y)[:2].tolist()))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(60)
        if p.is_alive():
            p.kill()
            raise SystemExit("child hung")
        print(q.get(timeout=5), p.exitcode)
        with ctx.Pool(2) as pool:                         # a fork Pool, as DataLoader workers are
            print(pool.starmap(smoothl1.smooth_l1, [(x, y), (y, x)]))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(0.5, [" + str(1 / N) + ", " + str(1 / N) + "]) 0",
                                           "[array(0.5, dtype=float32), array(0.5, dtype=float32)]"]


def test_a_loss_at_interpreter_exit_is_computed():
    # Before: atexit handlers and daemon threads at exit got "cannot schedule new futures".
    done = _python(f"""
        import atexit, threading, numpy as np, smoothl1
        smoothl1.set_num_threads(2)
        x, y = np.full({N}, 3.0, "f4"), np.zeros({N}, "f4")
        smoothl1.smooth_l1(x, y)
        atexit.register(lambda: print("atexit", smoothl1.smooth_l1(x, y), flush=True))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "atexit 2.5"


def test_threads_with_their_own_thresholds_get_their_own_losses():
    """Small thresholds are remembered by their values in one memo that every thread
    shares (and empties when full): 4 threads, 100 thresholds each (more than it holds),
    each result the single-threaded one."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 256, 16)).astype("f4")
    betas = rng.uniform(0.1, 3.0, (4, 100, 16)).astype("f4")
    want = [[smoothl1.smooth_l1(x, y, b) for b in per] for per in betas]
    got: list[list[np.ndarray]] = [[] for _ in betas]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                got[k] = [smoothl1.smooth_l1(x, y, b) for b in betas[k]]
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(betas))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for g, w in zip(got, want, strict=True):
        assert [a.tobytes() for a in g] == [a.tobytes() for a in w]
