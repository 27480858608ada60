"""A kernel fork-server: imports what ``python -m ipykernel_launcher`` imports, then forks kernels.

Run by path (``python .../_kernel_template.py``), never imported: the kernels it forks
must not find ``cml_nb`` (or this folder) in ``sys.modules`` or ``sys.path`` where a
kernel started by jupyter_client would not. It imports ``ipykernel.kernelapp``, as the
launcher does, and nothing else; it starts no thread and opens no ZeroMQ socket, so each
fork is a process that has run no kernel code yet. Per line on stdin (JSON: ``argv``,
``env``, ``cwd``) it forks a child that becomes what the launcher would have been: its
own session, the given environment and folder, the same ``sys.argv``, ``sys.path`` and
``sys.modules``; then it writes the child's pid as a line on stdout.
Python's ``random`` reseeds itself in each child (``os.register_at_fork``). When stdin
closes (its worker exited), it terminates the kernels it forked and exits.
"""

import contextlib
import json
import os
import signal
import sys
from typing import Any

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this folder is not on a kernel's path

import runpy  # noqa: E402, F401  (python -m imports it before the launcher runs)

from ipykernel import kernelapp  # noqa: E402  (what ipykernel_launcher imports)


def _child(request: dict[str, Any]) -> None:
    os.setsid()  # as jupyter_client's launcher (start_new_session): interrupts hit the group
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # stdout is the template's reply pipe: give the kernel stderr instead
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = request["argv"]  # [python, -X..., "-m", "ipykernel_launcher", "-f", CONNECTION, ...]
    at = argv.index("-m")
    launcher = os.path.join(os.path.dirname(kernelapp.__file__), os.pardir, "ipykernel_launcher.py")
    sys.argv = [os.path.normpath(launcher), *argv[at + 2 :]]
    kernelapp.launch_new_instance()
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel exits are reaped by the OS
    children = []
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(1)
        children.append(pid)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
