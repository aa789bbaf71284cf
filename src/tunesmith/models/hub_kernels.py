"""transformers' hub kernels (``model.hub_kernels``): compiled layers fetched from the Hugging Face
hub, used only where they can be had.

Recent transformers releases load every model with ``use_kernels`` on, and the first
``model.train()`` on a GPU then asks the hub for kernels such as ``kernels-community/rotary``.
Offline (``HF_HUB_OFFLINE=1``, or no network) that raises, and training never starts. tunesmith
therefore always loads with ``use_kernels=False`` and decides here, once the model is on its
device:

- ``off``: no hub kernels.
- ``on``: hub kernels are required; when one the model needs is not in the local cache and the
  hub cannot be reached, the run stops before training with the kernel's name and how to fetch it.
- ``auto`` (the default): on when every kernel the model needs on this device is in the local
  cache or the hub can be reached; otherwise off, with one line saying which kernel is missing.

Which kernels a model needs comes from transformers' kernel mapping and the layers the model
marks for it; whether one is cached comes from the ``kernels`` package's cache layout. Both are
those libraries' internals, read in this one module (tests/models/test_hub_kernels.py fails
loudly when they change).
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.config.vocabulary import HubKernels
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class HubKernel:
    """One hub kernel a model would load: the layer it replaces and where it comes from."""

    layer: str
    repo_id: str
    version: Optional[int] = None
    revision: Optional[str] = None

    def describe(self) -> str:
        """``kernels-community/rotary (version 2)`` / ``org/kernel (revision abc)``."""
        if self.version is not None:
            return f"{self.repo_id} (version {self.version})"
        return f"{self.repo_id} (revision {self.revision or 'main'})"

    def fetch_hint(self) -> str:
        """A command that puts this kernel in the local cache, run on a machine with network."""
        which = f"version={self.version}" if self.version is not None else f"revision={self.revision or 'main'!r}"
        return f"python -c \"from kernels import get_kernel; get_kernel('{self.repo_id}', {which})\""


def kernels_package_available() -> bool:
    """Whether transformers can use hub kernels at all (the ``kernels`` package is installed)."""
    try:
        from transformers.utils import is_kernels_available
    except ImportError:
        return False
    return bool(is_kernels_available())


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False offline; otherwise whether the hub endpoint answers within ``timeout_s`` seconds."""
    if hub_offline():
        return False
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except ImportError:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False


def _layer_names(model: Any) -> set[str]:
    """The kernel layer names the model's modules (and their attached functions) are marked with."""
    names = set()
    for module in model.modules():
        name = getattr(type(module), "kernel_layer_name", None)
        if name:
            names.add(name)
        for fn in getattr(module, "_kernel_funcs", {}).values():
            fn_name = getattr(type(fn), "kernel_layer_name", None)
            if fn_name:
                names.add(fn_name)
    return names


def _repos_of(entry: Any, device_type: str) -> list[Any]:
    """The repositories of one mapping entry for a device type (any mode)."""
    found = []
    for device, repos in entry.items():
        kind = device if isinstance(device, str) else getattr(device, "type", None)
        if kind != device_type:
            continue
        found.extend(repos.values() if isinstance(repos, dict) else [repos])
    return found


def _field(repo: Any, name: str) -> Any:
    """A `kernels.LayerRepository` field (kept as ``_name`` by kernels 0.19, ``name`` by others)."""
    return getattr(repo, name, None) if hasattr(repo, name) else getattr(repo, f"_{name}", None)


def needed_kernels(model: Any, device: str) -> list[HubKernel]:
    """The hub kernels ``model`` would load on ``device``, from transformers' kernel mapping."""
    if not kernels_package_available():
        return []
    from transformers.integrations.hub_kernels import get_kernel_mapping_transformers

    device_type = str(device).split(":")[0]
    mapping = get_kernel_mapping_transformers()
    found: dict[tuple, HubKernel] = {}
    for layer in sorted(_layer_names(model)):
        for repo in _repos_of(mapping.get(layer, {}), device_type):
            repo_id = _field(repo, "repo_id")
            if not repo_id:
                continue
            kernel = HubKernel(layer, repo_id, _field(repo, "version"), _field(repo, "revision"))
            found.setdefault((kernel.repo_id, kernel.version, kernel.revision), kernel)
    return list(found.values())


def kernel_cached(kernel: HubKernel) -> bool:
    """Whether the kernel's version (or revision) is in the local kernels cache."""
    try:
        from kernels._internals._versions import _cached_refs_dir
    except ImportError:
        return False
    refs = _cached_refs_dir(kernel.repo_id)
    ref = f"v{kernel.version}" if kernel.version is not None else (kernel.revision or "main")
    return (refs / ref).is_file() or (refs.parent / "snapshots" / ref).is_dir()


def decide_hub_kernels(setting: str, model: Any, device: str) -> tuple[bool, Optional[str]]:
    """Whether to use hub kernels, and a line for the log (None when there is nothing to say).
    ``setting``: a ``HubKernels`` use, or the ``model.hub_kernels`` value that declares one.

    Raises:
        ConfigError: ``on`` when the kernels package is missing or a needed kernel cannot be had.
    """
    use = HubKernels.for_setting(setting)
    if use == HubKernels.OFF:
        return False, None
    if not kernels_package_available():
        if use == HubKernels.REQUIRED:
            raise ConfigError("model.hub_kernels=on needs the kernels package: pip install kernels "
                              "(or set model.hub_kernels=auto)")
        return False, None
    kernels = needed_kernels(model, device)
    if not kernels:
        return (use == HubKernels.REQUIRED), None
    missing = [k for k in kernels if not kernel_cached(k)]
    if not missing or hub_reachable():
        return True, None
    names = ", ".join(k.describe() for k in missing)
    if use == HubKernels.REQUIRED:
        raise ConfigError(f"model.hub_kernels=on: {names}: not in the local cache, and the hub cannot be "
                          f"reached. On a machine with network run: {missing[0].fetch_hint()} (same "
                          "HF_HOME), or set model.hub_kernels=auto or off")
    return False, (f"Hub kernels off: not in the local cache, and the hub cannot be reached: {names} "
                   "(model.hub_kernels=auto; the model's own PyTorch layers are used)")


def apply_hub_kernels(model: Any, setting: str, device: str) -> Optional[str]:
    """Turn the model's hub kernels on or off as `decide_hub_kernels` says; returns its log line."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(inner, "set_use_kernels"):
        if HubKernels.for_setting(setting) == HubKernels.REQUIRED:
            raise ConfigError("model.hub_kernels=on: this transformers version or model has no hub kernels")
        return None
    use, note = decide_hub_kernels(setting, inner, device)
    if use != bool(getattr(inner, "use_kernels", False)):
        if use:
            inner.set_use_kernels(True)
        else:
            inner.use_kernels = False
    return note
