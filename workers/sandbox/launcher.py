"""The bubblewrap command line that starts a sandbox, and whether one can start here.

What the sandbox sees: the system's ``/usr`` (read-only), the Python runtime and
every folder on the worker's import path (read-only, with the data folder
masked wherever it falls inside one), a fresh ``/proc`` of its own PID
namespace, a minimal ``/dev`` and an empty, private ``/tmp``. Not the data
folder, not the worker's environment, not another process, and no network
unless asked for (a network namespace of its own, with only a loopback that
is down: jobsys's own Redis and database on 127.0.0.1 are out of reach).

Who it runs as: a root worker starts bubblewrap as root without a user
namespace (so the mounts can reach root-only paths such as a pyenv under
``/root``) with every capability dropped but the two the zygote needs to
switch to ``sandbox_user`` before it runs anything else; a worker that is not
root asks for a user namespace and the same uid inside it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ZYGOTE = Path(__file__).with_name("zygote.py")
#: Where the zygote script is mounted inside the sandbox.
ZYGOTE_INSIDE = "/.jobsys-sandbox/zygote.py"
#: Read-only system files a Python program may look for; those missing are skipped.
ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
)
#: Also mounted when the step may use the network.
NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/gai.conf")


@dataclass(frozen=True)
class SandboxUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> SandboxUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(
                f"JOBSYS_SANDBOX_USER={name!r} is not a user on this machine; "
                "name one that exists (nobody is the default)"
            ) from None
        if entry.pw_uid == 0:
            raise ValueError("JOBSYS_SANDBOX_USER must not be root")
        return cls(name, entry.pw_uid, entry.pw_gid)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


#: Where jobsys itself is imported from (its checkout, for an editable install,
#: whose finder in site-packages points there): chunks import it (``jobsys.secret``,
#: the client's one-call wrapper) wherever the worker was started.
JOBSYS_ROOT = str(Path(__file__).resolve().parents[2])


def import_path() -> list[str]:
    """The worker's ``sys.path`` as existing folders, in order, and jobsys's own
    root: the sandbox's Python imports from the same places (``-I`` leaves
    PYTHONPATH out)."""
    entries = [os.path.realpath(p or os.getcwd()) for p in sys.path] + [JOBSYS_ROOT]
    return list(dict.fromkeys(p for p in entries if os.path.isdir(p)))


def code_paths() -> list[str]:
    """The folders this Python imports from: the runtime and every existing
    ``sys.path`` entry (site-packages, the project), outermost first."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    paths.update(import_path())
    ordered = sorted(paths, key=lambda p: (p.count(os.sep), p))
    # A folder inside another one already listed comes with it.
    kept: list[str] = []
    for path in ordered:
        if not any(path == k or path.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(path)
    return [p for p in kept if p != os.sep and not p.startswith("/usr/")]


def _parents(paths: list[str]) -> list[str]:
    found: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found, key=lambda p: p.count(os.sep))


def bwrap_argv(
    *,
    results_fd: int,
    control_fd: int,
    user: SandboxUser,
    hide: list[str],
    network: bool = False,
    binds: Sequence[str] = (),
    bwrap: str = "bwrap",
) -> list[str]:
    """The command that starts the zygote in a new sandbox.

    ``hide``: folders masked with an empty tmpfs if they fall inside a mounted
    path (the data folder, which a project folder may hold). ``binds``: host
    folders the operator shares read-write with every sandbox
    (``JOBSYS_SANDBOX_MOUNTS``), at the same path."""
    mounted = code_paths()
    shared = [os.path.realpath(b) for b in binds]
    argv = [bwrap, "--die-with-parent", "--new-session"]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        argv.append("--unshare-net")
    if os.getuid() == 0:
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--uid", str(user.uid), "--gid", str(user.gid)]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        target = f"/{name}"
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    for path in ETC_FILES + (NETWORK_ETC_FILES if network else ()):
        argv += ["--ro-bind-try", path, path]
    # The writable /tmp first: a code path under /tmp (a checkout there) is then
    # mounted onto it rather than hidden by it.
    argv += ["--perms", "01777", "--tmpfs", "/tmp"]
    for parent in _parents(mounted + shared):
        argv += ["--perms", "0755", "--dir", parent]
    for path in mounted:
        argv += ["--ro-bind", path, path]
    for path in shared:
        argv += ["--bind", path, path]
    for path in hide:
        real = os.path.realpath(path)
        if os.path.isdir(real) and any(
            real == m or real.startswith(m.rstrip(os.sep) + os.sep) for m in mounted + shared
        ):
            argv += ["--perms", "0755", "--tmpfs", real]  # an empty folder in its place
    argv += ["--ro-bind", str(ZYGOTE), ZYGOTE_INSIDE]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--chdir", "/tmp", "--clearenv"]
    argv += ["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
    argv += ["--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONUNBUFFERED", "1"]
    argv += [sys.executable, "-I", ZYGOTE_INSIDE, "--results-fd", str(results_fd)]
    argv += ["--control-fd", str(control_fd), "--sys-path", os.pathsep.join(import_path())]
    argv += ["--scratch", "/tmp", "--uid", str(user.uid), "--gid", str(user.gid)]
    # Never cleared between chunks: they are the operator's, not the chunk's.
    argv += ["--keep", os.pathsep.join(shared)]
    return argv
