"""Which implementation computes the margin-softmax terms: the chunked PyTorch path or the
Triton kernel. :func:`choose_path` decides; :func:`requested_path` is the one reader of the
environment variable :data:`PATH_ENV`."""

from __future__ import annotations

import functools
import os

import torch

#: Values of ``path`` (``fused_margin_terms``, ``MarginHead.loss``).
PATHS = ("auto", "torch", "triton")
#: Environment variable read by ``path="auto"``: ``triton`` lets it take the kernel where the
#: kernel can run; ``auto`` (or unset) and ``torch`` keep the PyTorch path everywhere.
PATH_ENV = "MARGINFACE_FUSED_PATH"
#: The dtypes the Triton kernel takes (float32 accumulation; float64 computes in float64).
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: ... and those ``path="auto"`` sends to it on CUDA (float64 stays on the PyTorch path).
_AUTO_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def triton_available() -> bool:
    """True when the optional ``triton`` package imports (imported once, on first call)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def requested_path() -> str:
    """The path the environment variable :data:`PATH_ENV` asks for (``"auto"`` when unset or
    empty); ValueError for another value."""
    env = os.environ.get(PATH_ENV, "auto") or "auto"
    if env not in PATHS:
        raise ValueError(f"{PATH_ENV} must be 'auto', 'torch' or 'triton', got {env!r}")
    return env


def choose_path(
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    *,
    subcenters: int = 1,
    path: str = "auto",
) -> str:
    """Which implementation of ``fused_margin_terms`` runs: ``"torch"`` or ``"triton"``.

    ``path="auto"`` (the default): the chunked PyTorch path, unless the environment variable
    ``MARGINFACE_FUSED_PATH`` is ``triton``: then the Triton kernel for float32, bfloat16 and
    float16 inputs on a CUDA device when ``triton`` imports and the head has one centre per
    class, and the PyTorch path otherwise (CPU, float64, sub-centres, no triton).  The kernel is
    opt-in until it has been compiled and timed on a GPU (``benchmarks/heads_gpu.py``).
    ``path="torch"`` always
    takes the PyTorch path; ``path="triton"`` takes the kernel or raises a ValueError saying
    why it can't (sub-centres, a dtype it lacks, no triton, or a CPU tensor while the kernels
    are compiled: they run on CPU tensors only under Triton's interpreter, with
    ``TRITON_INTERPRET=1`` set before :mod:`marginface.heads.engine.triton_path` is imported).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
    device = torch.device(device)
    if path == "auto":
        use = (
            requested_path() == "triton"
            and device.type == "cuda"
            and subcenters == 1
            and dtype in _AUTO_TRITON_DTYPES
            and triton_available()
        )
        return "triton" if use else "torch"
    if path == "torch":
        return "torch"
    if subcenters != 1:
        raise ValueError(
            f"path='triton' has no sub-centres (subcenters={subcenters}); use path='torch' or "
            "'auto' (which takes the PyTorch path for them)"
        )
    if dtype not in TRITON_DTYPES:
        raise ValueError(f"path='triton' takes float16/bfloat16/float32/float64, got {dtype}")
    if not triton_available():
        raise ValueError("path='triton' needs the triton package (pip install triton)")
    from marginface.heads.engine.triton_path import INTERPRETED

    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"path='triton' runs on CUDA tensors (or on CPU tensors under Triton's interpreter, "
            f"TRITON_INTERPRET=1 set before marginface.heads.engine.triton_path is imported); got "
            f"device {device.type!r}"
        )
    return "triton"
