"""`dgem-infill bench`: latency of the engine on this machine, its cost breakdown, and side-by-side ratios.

    dgem-infill bench --quick                  CPU, under two minutes; ends with one JSON line
    dgem-infill bench --output docs/bench      every case; results.json and bench-*.png in the folder
    python3 -m infill_server.bench.gpu --out DIR   the GPU benchmarks (one self-contained script)

Modules: timing (percentiles, budgets, peak RSS), models (benchmark model folders), latency (fills,
cases), breakdown (cost per part, variants), compare (vs transformers' generate(), vs autoregressive,
accuracy), report (table, plots), gpu (GPU script). Imports stay lazy so that `gpu` needs only torch.
"""

from __future__ import annotations

import argparse
from typing import Any


def run_bench(args: argparse.Namespace, config: Any) -> int:
    from infill_server.bench.cpu import run_cpu_bench

    return run_cpu_bench(args, config)
