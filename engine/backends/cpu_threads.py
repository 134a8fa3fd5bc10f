"""One thread between the matrix products of a CPU pass, the caller's threads for the products.

With OMP_WAIT_POLICY=PASSIVE (the service's setting) every parallel region wakes sleeping threads, and
torch parallelises any element-wise operation over 32K elements: on a small CPU that wake-up costs more than
the work (docs/BENCHMARKS.md, session 5). Inside `one_thread_between_products` a pass runs on one thread,
except the kernels wrapped by `all_threads` (matrix products, attention), which get the caller's threads.
`torch.set_num_threads` is per calling thread and costs ~0.1 us, cheap enough around every product.
Where even the products are faster on one thread (small products on a fast CPU, `cheaper_on_one_thread`
times it), `one_thread` runs a whole pass there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

_threads = threading.local()  # OpenMP's thread count is per calling thread, and so is this


@contextmanager
def one_thread_between_products() -> Iterator[None]:
    """Run the enclosed work on one thread, except the kernels wrapped by `all_threads`."""
    threads = torch.get_num_threads()
    if threads == 1 or getattr(_threads, "saved", None) is not None:
        yield
        return
    _threads.saved = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _threads.saved = None


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed work wholly on one thread, the kernels wrapped by `all_threads` too."""
    threads, saved = torch.get_num_threads(), getattr(_threads, "saved", None)
    _threads.saved = None  # `all_threads` then leaves its kernel on the thread count set here
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _threads.saved = saved


def all_threads(kernel: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`kernel` with the caller's threads inside `one_thread_between_products`; unchanged outside it, and
    under torch.compile (which traces `kernel` itself)."""

    def run(*args: object, **kwargs: object) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return kernel(*args, **kwargs)
        threads = getattr(_threads, "saved", None)
        if threads is None:
            return kernel(*args, **kwargs)
        torch.set_num_threads(threads)
        try:
            return kernel(*args, **kwargs)
        finally:
            torch.set_num_threads(1)

    run.all_threads = kernel  # type: ignore[attr-defined]  # marks the wrapper: see `products_on_all_threads`
    return run


def products_on_all_threads(modules: list[torch.nn.Module]) -> None:
    """Wrap the `forward` of each module (per instance: parameters and state_dict unchanged) by
    `all_threads`, once however often it is called on the same module."""
    for module in modules:
        if not hasattr(module.forward, "all_threads"):
            module.forward = all_threads(module.forward)  # type: ignore[method-assign]


def cheaper_on_one_thread(run: Callable[[], object], repeats: int = 5) -> bool:
    """Whether `run` (a pass, or several) is at least as fast wholly on one thread as on the caller's threads:
    the best of `repeats` timings of each, interleaved, so that a busy neighbour delays single runs, rarely all
    of one side; a first round of each, untimed, compiles (compiled code is specialised to its thread count).

    A small model's canvas pass often is: waking a sleeping second thread for each of its kernels costs more
    than the thread saves (the bench's DiffusionGemma checkpoint, width 256: 2.8 ms against 4.8 a pass; the
    shipped model's bf16 steps on a CPU with AMX), while slower products gain from a second core (the shipped
    model's float16-weight steps on an AVX2 CPU: 33 ms against 42 on one thread)."""
    threads = torch.get_num_threads()
    if threads == 1:
        return True
    best = {1: float("inf"), threads: float("inf")}
    for round_ in range(repeats + 1):
        for count in best:
            torch.set_num_threads(count)
            try:
                started = time.perf_counter()
                run()
                if round_ > 0:
                    best[count] = min(best[count], time.perf_counter() - started)
            finally:
                torch.set_num_threads(threads)
    return best[1] <= best[threads]
