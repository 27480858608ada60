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
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
import weakref
from typing import Any

log = logging.getLogger(__name__)

#: nbclient's default for ``NotebookClient.ipython_hist_file``, which it passes to
#: ipykernel only for kernels it starts itself (nbclient/client.py, async_start_new_kernel).
HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"

_MANAGER: type | None = None

#: Kernels ``start_ahead`` launched that nobody has finished yet: shut down at exit,
#: as nbclient's own atexit hook does for its kernels, if a run raised in between.
_UNFINISHED: list[Any] = []
#: Kernels already asked to exit, so ``release`` does not interrupt one that is exiting.
_ASKED: weakref.WeakSet[Any] = weakref.WeakSet()


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
            #: Set per manager: fork a plain ipykernel from these templates, not launch it.
            templates: KernelTemplates | None = None

            async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
                python = interpreter(kernel_cmd)
                template = None
                if self.templates is not None and python is not None:
                    template = self.templates.get(python)
                if template is None:
                    await super()._async_launch_kernel(kernel_cmd, **kw)
                    return
                # LocalProvisioner.launch_kernel, with the template's fork for Popen.
                provisioner = self.provisioner
                env = dict(kw.get("env") or os.environ)
                env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launch_kernel
                try:
                    pid = template.fork(kernel_cmd, env, str(kw.get("cwd") or os.getcwd()))
                except (OSError, ValueError) as exc:  # the template died: launch as usual
                    log.debug("kernel template failed, launching the kernel: %s", exc)
                    self.templates.discard(python)  # type: ignore[union-attr,arg-type]
                    await super()._async_launch_kernel(kernel_cmd, **kw)
                    return
                provisioner.process = _ForkedProcess(pid)
                provisioner.pid = provisioner.pgid = pid  # the child calls setsid()
                provisioner.cwd = kw.get("cwd", os.getcwd())
                self._reconcile_connection_info(provisioner.connection_info)

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


def start(kernel: str, cwd: str, templates: KernelTemplates | None = None) -> Any:
    """Launch kernel ``kernel`` in ``cwd`` and return its manager without waiting for it.

    Raises whatever jupyter_client raises for a kernel that cannot be launched; callers
    that can fall back to nbclient's own start catch it.
    """
    from jupyter_core.utils import run_sync

    km = manager_class()(kernel_name=kernel)
    km.templates = templates
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
    _ASKED.add(km)
    with contextlib.suppress(Exception):  # already dead: finish() cleans up
        km.stop_restarter()
        run_sync(km.interrupt_kernel)()
        run_sync(km.request_shutdown)()


def finish(km: Any, waittime: float = 5) -> None:
    """Wait for a kernel asked to shut down (kill it after ``waittime``) and free its files."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(ValueError):
        _UNFINISHED.remove(km)
    _ASKED.discard(km)

    try:
        run_sync(km.finish_shutdown)(waittime=waittime)
    except Exception as exc:  # cleanup must never fail a run
        log.debug("kernel shutdown failed: %s", exc)
    with contextlib.suppress(Exception):
        run_sync(km.cleanup_resources)()


def release(km: Any) -> None:
    """Shut ``km`` down on any path out of a run: ask it to exit unless asked, then ``finish``.

    A run that raised between ``start_ahead`` and its own ``finish`` would otherwise leave
    the kernel (or, once it exited, an unreaped process and its IPC folder) until the
    process exits, which a long-lived caller such as the Jupyter server extension never does.
    """
    if km not in _ASKED:
        request_shutdown(km)
    finish(km)


def shutdown(km: Any) -> None:
    """Shut a kernel down gracefully, as nbclient does for the kernels it owns."""
    request_shutdown(km)
    finish(km)


class _ForkedProcess:
    """What jupyter_client's LocalProvisioner needs of a ``Popen``, for a forked kernel.

    The kernel is the template's child, not ours: its exit is reaped by the OS (the
    template ignores SIGCHLD), so "gone" is all ``poll`` can tell (returncode 0).
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0
            except PermissionError:  # a reused pid of another user: ours is gone
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.05)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class KernelTemplate:
    """A ``_kernel_template.py`` process for one Python: forks fresh kernels on request.

    Used for ``python -m ipykernel_launcher`` kernel specs only, on platforms with
    ``fork``; ``start(..., template=)`` falls back to a plain launch for anything else.
    """

    def __init__(self, python: list[str]) -> None:
        self.python = python
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernel_template.py")
        self.process = subprocess.Popen(
            [*python, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=tempfile.gettempdir(),
        )  # fmt: skip

    def fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        """A new kernel process running ``argv`` (a launcher command line); its pid."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": cwd}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line.strip():
            raise OSError("the kernel template exited")
        return int(line)

    def close(self) -> None:
        """Stop the template (it terminates the kernels it forked that still run)."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class KernelTemplates:
    """One ``KernelTemplate`` per interpreter, started on first use (a sweep worker's)."""

    def __init__(self) -> None:
        self._by_python: dict[tuple[str, ...], KernelTemplate] = {}

    def get(self, python: list[str]) -> KernelTemplate | None:
        """The template for ``python`` (None when it cannot be started: launch instead)."""
        key = tuple(python)
        if key not in self._by_python:
            try:
                self._by_python[key] = KernelTemplate(python)
            except OSError as exc:
                log.debug("cannot start a kernel template: %s", exc)
                return None
        return self._by_python[key]

    def discard(self, python: list[str]) -> None:
        """Forget (and stop) a template that failed."""
        found = self._by_python.pop(tuple(python), None)
        if found is not None:
            found.close()

    def close(self) -> None:
        """Stop every template."""
        while self._by_python:
            self._by_python.popitem()[1].close()


def interpreter(argv: list[str]) -> list[str] | None:
    """The interpreter part of a plain ``python [-X...] -m ipykernel_launcher`` command line.

    None for any other kernel command (or where there is no ``fork``): those launch as usual.
    """
    if not hasattr(os, "fork") or "-m" not in argv or not os.path.isabs(argv[0]):
        return None
    at = argv.index("-m")
    options = argv[1:at]
    if argv[at + 1 : at + 2] != ["ipykernel_launcher"] or any(o[:2] != "-X" for o in options):
        return None
    return argv[:at]
