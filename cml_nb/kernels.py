"""Jupyter kernels for a run: check one is installed, and start local ones over IPC.

A missing kernel is reported before papermill starts (jupyter_client would log
its own traceback first), with the package that provides the kernel for the
notebook's language: ``ipykernel install --name ir`` would install a *Python*
kernel called ``ir``, which is not what an R notebook needs.

Local kernels talk over IPC (Unix sockets in a private 0700 folder) where the
platform has it: no TCP port is opened, which is also why ipykernel stops
warning that the kernel "is running over TCP without encryption".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from cml_nb.errors import KernelNotFoundError


@dataclass(frozen=True)
class KernelPackage:
    """Who provides a language's kernel, and the command that installs it."""

    language: str
    package: str
    install: str


#: Keyed by the language name notebooks record (``kernelspec.language`` or
#: ``language_info.name``, lower-cased). Sources: each project's install docs
#: (irkernel.github.io, julialang.github.io/IJulia.jl, almond.sh, xeus-cling,
#: n-riesco/ijavascript, github.com/takluyver/bash_kernel, evcxr, SciRuby/iruby).
KERNEL_PACKAGES: dict[str, KernelPackage] = {
    "python": KernelPackage(
        "Python", "ipykernel", "python -m ipykernel install --user --name {name}"
    ),
    "r": KernelPackage(
        "R", "IRkernel", "in R: install.packages('IRkernel'); IRkernel::installspec()"
    ),
    "julia": KernelPackage("Julia", "IJulia", 'in Julia: using Pkg; Pkg.add("IJulia")'),
    "scala": KernelPackage("Scala", "almond", "see https://almond.sh/docs/quick-start-install"),
    "c++": KernelPackage("C++", "xeus-cling", "conda install -c conda-forge xeus-cling"),
    "javascript": KernelPackage(
        "JavaScript", "IJavascript", "npm install -g ijavascript && ijsinstall"
    ),
    "bash": KernelPackage(
        "Bash", "bash_kernel", "pip install bash_kernel && python -m bash_kernel.install"
    ),
    "rust": KernelPackage(
        "Rust", "evcxr_jupyter", "cargo install evcxr_jupyter && evcxr_jupyter --install"
    ),
    "ruby": KernelPackage("Ruby", "IRuby", "gem install iruby && iruby register --force"),
}

#: Kernel names that give their language away when the notebook does not say it.
_NAME_PREFIXES = {"ir": "r", "julia": "julia", "python": "python", "scala": "scala",
                  "xcpp": "c++", "javascript": "javascript", "bash": "bash", "rust": "rust",
                  "ruby": "ruby"}  # fmt: skip


def notebook_language(nb: Any) -> str:
    """The language a notebook is written in, lower-cased ("python" when it does not say)."""
    meta = nb.get("metadata", {}) or {}
    language = (meta.get("kernelspec", {}) or {}).get("language") or (
        meta.get("language_info", {}) or {}
    ).get("name")
    return str(language or "python").lower()


def _language_of(name: str, language: str | None) -> str:
    if language and language.lower() != "python":
        return language.lower()
    for prefix, lang in _NAME_PREFIXES.items():
        if name.lower().startswith(prefix):
            return lang
    return (language or "python").lower()


def missing_kernel_message(name: str, language: str | None) -> str:
    """One line: which kernel is missing, for which language, and what installs it."""
    lang = _language_of(name, language)
    found = KERNEL_PACKAGES.get(lang)
    if found is None:
        return (
            f"kernel {name!r} ({lang}) is not installed: install the Jupyter kernel for "
            f"{lang} (jupyter kernelspec list shows what is installed) or pass --kernel"
        )
    return (
        f"kernel {name!r} is not installed: the notebook is in {found.language}, and "
        f"{found.package} provides its kernel ({found.install.format(name=name)}); "
        "or pass --kernel (jupyter kernelspec list shows the installed ones)"
    )


def check_kernel(name: str, language: str | None = None) -> None:
    """Raise ``KernelNotFoundError`` (exit 2) when kernel ``name`` is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise KernelNotFoundError(missing_kernel_message(name, language)) from None


def ipc_supported() -> bool:
    """Whether ZeroMQ's IPC transport exists here (Unix sockets: not on Windows)."""
    return sys.platform != "win32"


def kernel_manager_class() -> type | None:
    """An ``AsyncKernelManager`` whose kernels use IPC, or None where IPC is unavailable.

    nbclient creates (and shuts down) the manager itself from this class; papermill
    passes ``kernel_manager_class`` through to nbclient's ``NotebookClient``.
    """
    if not ipc_supported():
        return None
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IpcKernelManager(AsyncKernelManager):  # type: ignore[misc]
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def _ip_default(self) -> str:
            # jupyter_client's default for IPC is the relative "kernel-ipc", which the
            # kernel resolves against *its* working directory and the client against
            # ours: use an absolute path in a folder only this user can enter.
            self._ipc_folder = tempfile.mkdtemp(prefix="cml-nb-kernel-")
            return os.path.join(self._ipc_folder, "kernel")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            folder = getattr(self, "_ipc_folder", None)
            if folder and not restart:  # a restart binds the same socket paths again
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder)

    return IpcKernelManager
