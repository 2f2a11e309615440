"""The GPU speed levers' optional packages (Liger-Kernel, torchao), imported only when a lever is on.

Their checks are gpt2core.config.check_levers'; docs/gpu-levers.md says what each lever does.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gpt2core.errors import WikiGPTError

# optional packages: (import name, pip name, the pyproject extra that installs it)
LIGER = ("liger_kernel", "liger-kernel", "liger")
TORCHAO = ("torchao", "torchao", "float8")


def import_optional(key: str, package: tuple[str, str, str], module: str | None = None) -> ModuleType:
    """Import a lever's optional package (or one of its modules) only when the lever is on; a one-line error
    naming the key when it is not installed."""
    name, pip_name, extra = package
    try:
        return importlib.import_module(module or name)
    except ImportError as exc:
        if exc.name is not None and exc.name != name and not exc.name.startswith(name + "."):
            raise WikiGPTError(f"config: train.{key}: {pip_name} is installed but does not import ({exc})") from None
        raise WikiGPTError(f"config: train.{key} needs the {pip_name} package: pip install 'wikigpt[{extra}]' "
                           f"(or {pip_name}), or remove train.{key}") from None
