"""What the machine offers: free memory, accelerators, precision and data parallelism.

The queries are best effort and cheap: a value that cannot be found falls back to a
conservative default, never to an error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import InputError

#: Share of the free memory one batch of tiles may use.
MEMORY_SHARE = 0.25
MIN_BUDGET = 256 << 20
MAX_BUDGET = 8 << 30
#: Budget when the free memory cannot be read.
FALLBACK_BUDGET = 1 << 30


def available_memory() -> int | None:
    """Bytes of main memory that can be used without swapping (``None`` if unknown).

    Linux's ``MemAvailable``, or ``psutil`` where installed; a cgroup (container) limit
    is taken into account when it is lower.
    """
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if free is None:
        try:
            import psutil

            free = int(psutil.virtual_memory().available)
        except Exception:
            return None
    limit = _cgroup_room()
    return min(free, limit) if limit is not None else free


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup v2 memory limit, if it has one."""
    try:
        base = Path("/sys/fs/cgroup")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def _backend_name() -> str:
    from ._backend import keras

    return keras.backend.backend()


def accelerator_memory() -> int | None:
    """Bytes free for our use on the first GPU the Keras backend computes on, or
    ``None`` when it computes on the CPU (or that cannot be read)."""
    try:
        backend = _backend_name()
        if not uses_accelerator():
            return None
        if backend == "jax":
            import jax

            # JAX computes inside a pool it reserved: what the pool has left.
            stats = jax.devices()[0].memory_stats() or {}
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        if backend == "tensorflow":
            import tensorflow as tf

            # TensorFlow reserves the GPU for itself: its size less what it uses now.
            total = _nvidia_total_memory()
            if total is None:
                return None
            return total - int(tf.config.experimental.get_memory_info("GPU:0")["current"])
        if backend == "torch":
            import torch

            return int(torch.cuda.mem_get_info()[0])
    except Exception:
        return None
    return None


def visible_gpu_id() -> str:
    """``nvidia-smi``'s id of the first GPU this process can see: the first entry of
    ``CUDA_VISIBLE_DEVICES`` (an index or a UUID) when it is set, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


def nvidia_gpu_count() -> int:
    """GPUs ``nvidia-smi`` lists (0 where it is not installed), without importing a
    deep-learning library."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        out = subprocess.run([tool, "--list-gpus"], capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.strip().startswith("GPU "))


@functools.cache
def _nvidia_total_memory() -> int | None:
    """Memory of the first visible GPU from ``nvidia-smi``, where installed."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, "--query-gpu=memory.total", "--format=csv,noheader,nounits", f"--id={visible_gpu_id()}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return int(out.split()[0]) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@functools.cache
def uses_accelerator() -> bool:
    """Whether the Keras backend computes on a GPU (or another accelerator)."""
    return accelerator_count() > 0


def resolve_preset(preset: str = "auto") -> tuple[str, str]:
    """The network preset ``preset`` stands for, and why: ``auto`` is the tutorial's
    ``classic`` network where a GPU computes and ``light`` on a CPU, where ``classic``
    trains about 13x slower (docs/benchmarks.md). Once the model code is loaded the
    backend's own devices decide; before (a napari panel on the GUI thread) the GPUs
    that ``nvidia-smi`` lists do, so that no deep-learning library is imported for it."""
    if preset != "auto":
        return preset, ""
    import sys

    gpu = uses_accelerator() if "napari_unet_cat._backend" in sys.modules else nvidia_gpu_count() > 0
    if gpu:
        return "classic", "auto: a GPU computes, so the tutorial's classic network"
    return "light", "auto: no GPU, so the light network (classic trains about 13x slower on a CPU)"


def memory_budget(free: int | None = None) -> int:
    """Bytes one network call may use: a quarter of the free memory (of the GPU when
    one is used), between 256 MiB and 8 GiB."""
    if free is None:
        free = accelerator_memory() if uses_accelerator() else available_memory()
    if free is None:
        return FALLBACK_BUDGET
    return int(min(MAX_BUDGET, max(MIN_BUDGET, free * MEMORY_SHARE)))


# -- precision and devices ---------------------------------------------------------------
#: Compute precisions: ``auto`` is ``mixed_float16`` on a GPU (float16 math, float32
#: weights; about twice the speed on tensor cores) and ``float32`` on a CPU, where half
#: precision is slower.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(precision: str = "auto") -> str:
    """The Keras dtype policy to build a network with (``auto`` decided here)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)} (received {precision!r})")
    if precision == "auto":
        return "mixed_float16" if uses_accelerator() else "float32"
    return precision


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build layers under the Keras dtype policy ``name`` (the global one is restored)."""
    from ._backend import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def accelerator_count() -> int:
    """GPUs (or other accelerators) the Keras backend sees."""
    try:
        backend = _backend_name()
        if backend == "jax":
            import jax

            return sum(d.platform != "cpu" for d in jax.devices())
        if backend == "tensorflow":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch

            return torch.cuda.device_count()
    except Exception:
        return 0
    return 0


def distribution_scope(data_parallel: bool | None = None) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of contexts to build, compile and train a model in.

    With ``data_parallel`` (default: when more than one GPU is seen) each batch is split
    across the devices, whose weights stay in sync: TensorFlow's ``MirroredStrategy``,
    or Keras's ``DataParallel`` distribution on JAX. Otherwise the contexts do nothing.
    """
    if data_parallel is None:
        data_parallel = accelerator_count() > 1
    if not data_parallel:
        return contextlib.nullcontext
    backend = _backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope
    if backend == "jax":
        from ._backend import keras

        return keras.distribution.DataParallel().scope
    raise InputError(f"data-parallel training is not supported on the {backend} backend")
