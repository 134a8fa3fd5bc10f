"""One thread between the matrix products of a CPU pass, the caller's threads for the products.

With OMP_WAIT_POLICY=PASSIVE (the service's setting) every parallel region wakes sleeping threads, and
torch parallelises any element-wise operation over 32K elements: on a small CPU that wake-up costs more than
the work (docs/BENCHMARKS.md, session 5). Inside `one_thread_between_products` a pass runs on one thread,
except the kernels wrapped by `all_threads` (matrix products, attention), which get the caller's threads.
`torch.set_num_threads` is per calling thread and costs ~0.1 us, cheap enough around every product.
"""

from __future__ import annotations

import threading
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
