"""Kernels started ahead of the work that needs them: one fresh kernel per run, never reused.

A kernel takes about as long to boot (a new Python process importing ipykernel) as
cml-nb takes to import papermill and nbclient. ``start`` launches the kernel process
and returns at once, so a run can do its imports while the kernel boots; nbclient then
connects to it (``km=``) and waits for it to be ready. ``shutdown`` stops it the way
nbclient stops a kernel it owns.

Each kernel started here is what nbclient would have started itself: the same kernel
spec, working directory and environment, IPC transport where the platform has it
(``kernels.kernel_manager_class``), and IPython history kept in memory
(``--HistoryManager.hist_file=:memory:``, nbclient's ``ipython_hist_file`` default),
so no run can read an earlier run's code through ``%history`` or the history database.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

#: nbclient's default for ``NotebookClient.ipython_hist_file``, which it passes to
#: ipykernel only for kernels it starts itself (nbclient/client.py, async_start_new_kernel).
HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"

_MANAGER: type | None = None

#: Kernels ``start_ahead`` launched that nobody has finished yet: shut down at exit,
#: as nbclient's own atexit hook does for its kernels, if a run raised in between.
_UNFINISHED: list[Any] = []


def _client_class() -> type:
    """An ``AsyncKernelClient`` whose ``wait_for_ready`` returns once the kernel answered.

    jupyter_client's version (client.py, ``_async_wait_for_ready``, 8.x) ends by reading
    IOPub until 0.2 s pass without a message: a fixed 0.2 s per kernel start, a third of
    a short run's own time. It only discards the start-up messages (``status``), and
    nbclient ignores every IOPub message whose ``parent_header.msg_id`` is not the
    request it waits for (nbclient/client.py, ``_async_poll_output_msg``), so the flush
    buys nbclient nothing. The handshake itself (kernel_info reply on shell, one IOPub
    message to prove IOPub is connected) is kept as it is.
    """
    import time
    from queue import Empty

    from jupyter_client.asynchronous.client import AsyncKernelClient

    class ReadyClient(AsyncKernelClient):  # type: ignore[misc]
        async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.time() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    if msg["msg_type"] == "kernel_info_reply":
                        try:  # IOPub connected? (else start over, as jupyter_client does)
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            return
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.time() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

        # AsyncKernelClient binds wait_for_ready to KernelClient's coroutine itself.
        wait_for_ready = _async_wait_for_ready

    return ReadyClient


def manager_class() -> type:
    """A kernel manager (IPC where available) that remembers its clients, so they can be closed."""
    global _MANAGER
    if _MANAGER is None:
        from traitlets import Type

        from cml_nb import kernels

        base = kernels.kernel_manager_class()
        if base is None:
            from jupyter_client.manager import AsyncKernelManager

            base = AsyncKernelManager

        class Manager(base):  # type: ignore[misc,valid-type]
            client_factory = Type(_client_class(), klass="jupyter_client.client.KernelClient")

            def client(self, **kwargs: Any) -> Any:
                # nbclient leaves the channels of a kernel it does not own open.
                made = super().client(**kwargs)
                self.__dict__.setdefault("clients", []).append(made)
                return made

            async def cleanup_resources(self, restart: bool = False) -> None:
                # AsyncKernelManager binds cleanup_resources to KernelManager's own
                # coroutine, which would skip the IPC folder removal of our subclass.
                await self._async_cleanup_resources(restart=restart)

        _MANAGER = Manager
    return _MANAGER


def start(kernel: str, cwd: str) -> Any:
    """Launch kernel ``kernel`` in ``cwd`` and return its manager without waiting for it.

    Raises whatever jupyter_client raises for a kernel that cannot be launched; callers
    that can fall back to nbclient's own start catch it.
    """
    from jupyter_core.utils import run_sync

    km = manager_class()(kernel_name=kernel)
    extra = [HISTORY_IN_MEMORY] if getattr(km, "ipykernel", False) else []
    run_sync(km.start_kernel)(cwd=cwd, extra_arguments=extra)
    return km


def start_ahead(kernel: str, cwd: str) -> Any | None:
    """``start``, or None when the kernel cannot be launched (nbclient then starts and reports it).

    The caller calls ``request_shutdown`` and ``finish``; a kernel left unfinished is
    shut down when the process exits.
    """
    try:
        km = start(kernel, cwd)
    except Exception as exc:  # the run's own start reports the problem as it always did
        log.debug("could not start kernel %s ahead: %s", kernel, exc)
        return None
    if not _UNFINISHED:
        atexit.register(_shutdown_unfinished)
    _UNFINISHED.append(km)
    return km


def _shutdown_unfinished() -> None:
    while _UNFINISHED:
        shutdown(_UNFINISHED.pop())


def close_clients(km: Any) -> None:
    """Stop the channels of every client made for ``km``."""
    for client in km.__dict__.pop("clients", ()):
        with contextlib.suppress(Exception):
            client.stop_channels()


def request_shutdown(km: Any) -> None:
    """Ask the kernel to exit without waiting (``finish`` waits and cleans up).

    Like jupyter_client's ``shutdown_kernel``, interrupt first: a cell still running
    (after a timeout) would otherwise hold the kernel until ``finish`` kills it.
    """
    from jupyter_core.utils import run_sync

    close_clients(km)
    with contextlib.suppress(Exception):  # already dead: finish() cleans up
        km.stop_restarter()
        run_sync(km.interrupt_kernel)()
        run_sync(km.request_shutdown)()


def finish(km: Any, waittime: float = 5) -> None:
    """Wait for a kernel asked to shut down (kill it after ``waittime``) and free its files."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(ValueError):
        _UNFINISHED.remove(km)

    try:
        run_sync(km.finish_shutdown)(waittime=waittime)
    except Exception as exc:  # cleanup must never fail a run
        log.debug("kernel shutdown failed: %s", exc)
    with contextlib.suppress(Exception):
        run_sync(km.cleanup_resources)()


def shutdown(km: Any) -> None:
    """Shut a kernel down gracefully, as nbclient does for the kernels it owns."""
    request_shutdown(km)
    finish(km)
