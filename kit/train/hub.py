"""The Hugging Face hub as kit's model loaders (timm, open_clip) reach it.

- `hub_reachable`: a short TCP connect to the hub's host, HF_ENDPOINT honoured (default huggingface.co:443).
- `ensure_hub_mode`: the offline switch. A user's HF_HUB_OFFLINE (set either way) is respected; otherwise,
  when something may be downloaded, the probe decides, and an unreachable hub sets HF_HUB_OFFLINE=1 (patched
  into huggingface_hub if it is already imported) so a missing weight fails in about a second instead of
  after ~50 s of retries.
- `cache_resample`: a hub model config's interpolation as the resample of kit's image cache.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 1.0
DEFAULT_ENDPOINT = "https://huggingface.co"
TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("0", "false", "no", "off")
RESAMPLE_OF = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest", "lanczos": "lanczos"}


def hub_address() -> tuple[str, int]:
    """(host, port) of HF_ENDPOINT, default huggingface.co:443."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection(hub_address(), timeout=timeout):
            return True
    except OSError:
        return False


def user_offline_choice() -> bool | None:
    """The user's HF_HUB_OFFLINE: True (offline), False (online), None when unset or not a yes/no value."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if env in TRUE_VALUES:
        return True
    if env in FALSE_VALUES:
        return False
    return None


def ensure_hub_mode(*, downloads: bool = True) -> bool:
    """Decide once whether the hub is usable; returns True when offline.

    `downloads=False` (a model loaded from a local folder) never probes: without a user's choice it is online.
    """
    choice = user_offline_choice()
    if choice is False:
        return False
    if choice is None and (not downloads or hub_reachable()):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported earlier (e.g. by timm): its constant is already read
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    return True


def cache_resample(interpolation: object) -> str:
    """The image cache's resample for a model config's interpolation (bicubic for anything else)."""
    return RESAMPLE_OF.get(str(interpolation), "bicubic")
