"""The matrix-multiply floor of a piece of torch code: record its GEMMs, replay them alone.

A ``TorchDispatchMode`` records every ``mm`` / ``addmm`` dispatched while active (operand shapes, strides and
dtype, so transposed backward operands are replayed as they were); ``replay_seconds`` times those multiplies on
fresh tensors. floor / measured is the fraction of the machine's matrix rate that the code achieves with its own
shapes. ``concurrent_replay_seconds`` replays them in several one-thread processes at once: how far the cores
scale together (shared L3, memory bandwidth, clocks) before any framework is involved. Used by
epoch_throughput.py and parzen_10m.py.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# the out= forms too: the Parzen accumulator writes each GEMM block into a reused buffer
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.mm.out, torch.ops.aten.addmm.out}
ADDMM = {torch.ops.aten.addmm.default, torch.ops.aten.addmm.out}


@dataclass(frozen=True)
class Gemm:
    """One recorded multiply: operand sizes and strides (bias first for addmm), dtype."""

    op: str
    sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    dtype: torch.dtype

    @property
    def flops(self) -> int:
        (m, k), (_, n) = self.sizes[-2], self.sizes[-1]
        return 2 * m * n * k

    def operands(self) -> list[torch.Tensor]:
        return [operand(size, stride, self.dtype) for size, stride in zip(self.sizes, self.strides, strict=True)]


def operand(size: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A fresh tensor laid out like a recorded one (an expanded, stride-0 operand becomes a contiguous one)."""
    if 0 in stride:
        return torch.rand(size, dtype=dtype)
    return torch.empty_strided(size, stride, dtype=dtype).uniform_(-1, 1)


class GemmRecorder(TorchDispatchMode):
    """Records every matrix multiply dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.gemms: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.gemms.append(Gemm("addmm" if func in ADDMM else "mm",
                                   tuple(tuple(t.shape) for t in tensors), tuple(t.stride() for t in tensors),
                                   tensors[-1].dtype))
        return func(*args, **(kwargs or {}))


def prepared(gemms: list[Gemm]) -> list[tuple[str, list[torch.Tensor]]]:
    """Fresh operands for every recorded multiply, allocated before any timing."""
    return [(g.op, g.operands()) for g in gemms]


def replay_seconds_of(operands: list[tuple[str, list[torch.Tensor]]], repeats: int) -> float:
    """Seconds per pass over prepared operands (median of ``repeats`` after one warm-up)."""

    def once() -> float:
        start = time.perf_counter()
        for op, args in operands:
            torch.addmm(*args) if op == "addmm" else torch.mm(*args)
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def replay_seconds(gemms: list[Gemm], repeats: int) -> float:
    """Seconds per replay of the recorded multiplies on fresh tensors, in this process."""
    return replay_seconds_of(prepared(gemms), repeats)


def _replay_after(barrier, gemms: list[Gemm], repeats: int, out) -> None:
    torch.set_num_threads(1)
    operands = prepared(gemms)  # before the start line
    barrier.wait()
    out.put(replay_seconds_of(operands, repeats))


def concurrent_replay_seconds(gemms: list[Gemm], processes: int, repeats: int = 3) -> list[float]:
    """Seconds per replay in each of ``processes`` fresh one-thread processes started together (spawned, so no
    torch thread pool is inherited)."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_replay_after, args=(barrier, gemms, repeats, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    seconds = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return seconds
