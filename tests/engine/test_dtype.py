"""bf16 and float16-weight matrix products on a CPU (engine/backends/native.py): what stays float32, how close the logits stay
to float32's, and how the dtype is chosen (engine/backends/precision.py: the override, the timing at load)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine import Engine
from engine.backends import precision
from engine.backends.native import NativeBackend
from engine.backends.precision import DTYPE_ENV, cpu_matmul_dtype
from engine.native import RMSNorm
from engine.types import ModelLoadError

REPOSITORY = Path(__file__).resolve().parents[2]


def logits_of(engine: Engine) -> torch.Tensor:
    """A full pass over a half-masked hole after a short prefix -> logits (1, hole, V) as the sampler gets them."""
    backend = engine.backend
    cache = backend.new_cache()
    backend.extend(cache, torch.tensor(engine.prefix_ids("def add(a, b):\n    return ")), 0)
    mask = engine.tokenizer.special.mask
    hole = engine.tokenizer.encode("a +") + [mask] * 4
    canvas = torch.tensor([hole + engine.tokenizer.encode("\n\nprint(add(1, 2))\n")])  # (1, C)
    return backend.denoise(cache, canvas, len(hole))


def test_bf16_runs_the_matrix_products_and_keeps_norms_and_residual_stream_float32(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype="bfloat16")
    model = engine.backend.model
    assert engine.info.dtype == "bfloat16"
    assert model.blocks[0].ffn.gate_up.weight.dtype == model.embed.weight.dtype == torch.bfloat16
    assert all(module.weight.dtype == torch.float32 for module in model.modules() if isinstance(module, RMSNorm))
    assert model.embed_tokens(torch.tensor([[5, 6]])).dtype == torch.float32
    cache = engine.backend.new_cache()
    engine.backend.extend(cache, torch.tensor([2, 5, 6]), 0)
    assert cache.layers[0].k.dtype == torch.bfloat16  # the caches follow the matrix products
    assert logits_of(engine).dtype == torch.float32  # the sampler's log-probs and confidences: float32


def test_bf16_logits_are_close_to_float32_ones(tiny_model_dir: Path) -> None:
    exact = logits_of(Engine.load(tiny_model_dir, device="cpu", dtype="float32"))
    bf16 = logits_of(Engine.load(tiny_model_dir, device="cpu", dtype="bfloat16"))
    gap = (bf16 - exact).abs().max()
    # measured: 0.0045 against a logit spread of 0.17 (2.7%); nonzero, so bf16 really ran
    assert 0 < gap < 0.05 * exact.std()
    assert torch.equal(bf16.argmax(-1), exact.argmax(-1))


@pytest.mark.parametrize("name, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_the_override_forces_either_dtype_whatever_the_timing_says(
    tiny_model_dir: Path, monkeypatch, name: str, dtype: torch.dtype
) -> None:
    other = torch.float32 if dtype == torch.bfloat16 else torch.bfloat16
    monkeypatch.setattr(precision, "cpu_reports_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "half_weight_products_work", lambda: False)
    monkeypatch.setattr(precision, "cpu_matmul_dtype", lambda dim, ffn_dim: other)
    assert NativeBackend.load(tiny_model_dir, torch.device("cpu"), name).dtype == dtype
    monkeypatch.setenv(DTYPE_ENV, name)
    assert Engine.load(tiny_model_dir, device="cpu").info.dtype == name
    monkeypatch.setenv(DTYPE_ENV, "auto")
    assert Engine.load(tiny_model_dir, device="cpu").info.dtype == str(other).removeprefix("torch.")


def test_an_unknown_dtype_is_a_load_error_that_names_the_variable(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv(DTYPE_ENV, "float8")
    with pytest.raises(ModelLoadError, match=f"'float8'.*{DTYPE_ENV}.*float32, bfloat16, float16 or auto"):
        Engine.load(tiny_model_dir, device="cpu")


def test_float16_is_for_backends_that_run_float16_weights_only() -> None:
    with pytest.raises(ModelLoadError, match="'float16'.*float32, bfloat16 or auto"):
        precision.chosen_dtype(torch.device("cpu"), 8, 16, "float16")  # a caller without the kernels
    assert precision.chosen_dtype(torch.device("cpu"), 8, 16, "float16", half_weights=True) == torch.float16


def test_float16_keeps_the_weights_in_float16_and_everything_else_float32(tiny_model_dir: Path) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype="float16")
    model = engine.backend.model
    assert engine.info.dtype == "float16"
    assert model.blocks[0].ffn.gate_up.weight.dtype == model.embed.weight.dtype == torch.float32  # the parameters
    cache = engine.backend.new_cache()
    engine.backend.extend(cache, torch.tensor([2, 5, 6]), 0)
    assert cache.layers[0].k.dtype == torch.float32
    assert logits_of(engine).dtype == torch.float32


def test_float16_weight_logits_are_closer_to_float32_than_bf16_ones(tiny_model_dir: Path) -> None:
    exact = logits_of(Engine.load(tiny_model_dir, device="cpu", dtype="float32"))
    half = logits_of(Engine.load(tiny_model_dir, device="cpu", dtype="float16"))
    bf16 = logits_of(Engine.load(tiny_model_dir, device="cpu", dtype="bfloat16"))
    gap = (half - exact).abs().max()
    assert 0 < gap < (bf16 - exact).abs().max() / 2  # nonzero: the float16 weights really ran
    assert torch.equal(half.argmax(-1), exact.argmax(-1))


def test_auto_takes_float16_weights_on_a_cpu_without_native_bf16(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_reports_native_bf16", lambda: False)
    monkeypatch.setenv(DTYPE_ENV, "auto")
    assert Engine.load(tiny_model_dir, device="cpu").info.dtype == "float16"
    monkeypatch.setattr(precision, "half_weight_products_work", lambda: False)  # a torch without the kernel
    monkeypatch.setattr(precision, "cpu_matmul_dtype", lambda dim, ffn_dim: torch.float32)
    assert Engine.load(tiny_model_dir, device="cpu").info.dtype == "float32"


def test_a_cpu_that_reports_native_bf16_gets_it_without_a_timing(monkeypatch) -> None:
    def no_timing(dim: int, ffn_dim: int) -> torch.dtype:
        raise AssertionError("timed although the CPU reports native bf16")

    monkeypatch.setattr(precision, "cpu_matmul_dtype", no_timing)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert precision.chosen_dtype(torch.device("cpu"), 8, 16, "auto") == torch.bfloat16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held below bf16: the timing decides
    monkeypatch.setattr(precision, "cpu_matmul_dtype", lambda dim, ffn_dim: torch.float32)
    assert precision.chosen_dtype(torch.device("cpu"), 8, 16, "auto") == torch.float32


@pytest.mark.parametrize("bf16_seconds, expected", [(0.5, torch.bfloat16), (0.9, torch.float32), (4.0, torch.float32)])
def test_the_timing_picks_bf16_only_when_clearly_faster(monkeypatch, bf16_seconds: float, expected) -> None:
    clock = [0.0]
    cost = {torch.float32: 1.0, torch.bfloat16: bf16_seconds}
    first = {torch.float32: 50.0, torch.bfloat16: 50.0}  # a slow first call (kernels built) is not counted

    def linear(a: torch.Tensor, w: torch.Tensor) -> None:
        clock[0] += first.pop(a.dtype, cost[a.dtype])

    monkeypatch.setattr(precision, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(precision, "F", SimpleNamespace(linear=linear))
    assert cpu_matmul_dtype(8, 16) == expected


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's x86 ISA switch")
def test_a_cpu_without_native_bf16_stays_float32() -> None:
    # oneDNN held to AVX2, as on a laptop without AVX512-BF16 or AMX: bf16 products are emulated, ~4x slower
    code = (
        "from engine.backends.precision import cpu_matmul_dtype as t; from engine.native import NativeConfig as C; "
        "c = C(); print(t(c.dim, c.ffn_dim))"
    )
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch.float32"
