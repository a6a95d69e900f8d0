"""Where and how a member trains: device, autocast dtype, channels_last, pinned memory.

CUDA gets AMP (bf16 where supported, else fp16 with a GradScaler), channels_last and pinned host memory;
the CPU path stays fp32 and contiguous so its results are reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kit.errors import KitError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: no autocast
    channels_last: bool
    pin_memory: bool

    @property
    def needs_scaler(self) -> bool:
        import torch

        return self.amp_dtype == torch.float16

    def autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def select_device(
    name: str, device: str = "auto", *, amp: bool = True, channels_last: bool = True
) -> DeviceSetup:
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise KitError(
            f"members.{name}.device is 'cuda' but torch sees no CUDA device "
            f"(torch {torch.__version__}); set members.{name}.device: auto (or cpu)"
        )
    use_cuda = has_cuda and device != "cpu"
    if not use_cuda:
        return DeviceSetup(torch.device("cpu"), None, False, False)
    dtype = None
    if amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DeviceSetup(torch.device("cuda"), dtype, channels_last, True)
