"""Run untrusted code (model- or teacher-written) in a separate, limited process.

    res = run_python("print(sum(range(10)))", timeout_s=5, memory_mb=256)
    res.stdout, res.returncode, res.timed_out
    res = run_command(["ls", "-la"], workdir=folder)
    with Sandbox() as box:                       # one process for a whole episode
        box.write_file("solution.py", src)
        box.run("python3 -c 'import solution'")
        box.run_python("import solution; print(solution.f(2))")

Every sandbox is a fresh process: the host computes an isolation plan and starts the guest
(`sandbox_guest.py`, stdlib only) which applies it while still privileged, then execs the
command (`--exec`) or serves a session (`--serve`). Layers (each proved by a test in
tests/agentic/test_sandbox.py; the escape attempts they stop are tests/agentic/
test_sandbox_escapes.py):

- rlimits: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size (RLIMIT_FSIZE),
  process count (RLIMIT_NPROC), no core dumps, 256 open files. Memory is bounded per process:
  the whole sandbox holds at most `memory_mb * max_procs` (`SandboxLimits.tree_memory_mb`; no
  cgroup budget, see below);
- new network, mount and PID namespaces (as root, or unprivileged user namespaces): no network
  interface but a down loopback (abstract UNIX sockets are per network namespace); a fresh
  root filesystem holding only the system folders, the interpreter and the boot folder
  read-only, five device nodes, its own /proc, and the workdir read-write at the fixed path
  /tmp/youtu-workspace (same tracebacks from run to run): no host /tmp, /run, /home or /root,
  so no host UNIX socket file and no private file of the host user can be reached; PID 1 of
  the namespace is the guest, so processes outside are invisible (no signal reaches them) and
  everything inside dies with it;
- a wall-clock timeout that kills the whole tree (the namespace's init, or as root every
  process of the sandbox's uid) and returns within about a second of it, even when a daemon
  holds the command's stdout;
- a private temporary working directory, a clean environment (PATH, HOME=TMPDIR=workdir, UTF-8);
- as root, a drop to a fresh unprivileged uid per sandbox (RLIMIT_NPROC does not bind root,
  and the uid scopes process counting and the final kill to this sandbox); in a user
  namespace, uid 1000 without any capability (no remount, no ptrace of the guest);
- for Python, an audit hook (`sandbox_guest.install_guard`) refusing internet sockets, UNIX
  socket connections outside the workdir and writes outside it.

Fail closed: where the host gives no namespaces, untrusted code is refused with a
`SandboxError` unless `SandboxLimits(allow_unisolated=True)` (config key `allow_unisolated`,
or YOUTU_SANDBOX_ALLOW_UNISOLATED=1) opts into rlimits and the audit hook alone, which
`/bin/sh`, `python3 -I` or ctypes go around. The boot folder (guest module + sitecustomize) is
a fresh `mkdtemp` of this process, never a path another user could have planted.

Considered: bubblewrap builds the same namespaces and root (checked: Debian's bwrap 0.8.0 is not
setuid, so it needs the same unprivileged user namespaces as this path and covers no host this
path does not), and would be a system package pip cannot declare; a cgroup v2 memory budget
for the whole tree needs a delegated cgroup with the memory controller, which neither this host
(v2 without memory) nor the usual container (its cgroup belongs to the runtime) lends.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from youtu.agentic import sandbox_guest

logger = logging.getLogger(__name__)

_VIEW = "/tmp/youtu-workspace"
"""Where the workdir appears inside a sandbox with namespaces: a fixed path keeps tracebacks
and `pwd` output identical from run to run."""
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""Host folders every sandbox sees (read-only), with the interpreter's prefixes."""
ALLOW_UNISOLATED_ENV = "YOUTU_SANDBOX_ALLOW_UNISOLATED"
_UID_BASE = 1_000_000
"""Sandbox uids are _UID_BASE + host pid * 128 + counter: unique per live sandbox, < 2**31."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox."""

    timeout_s: float = 10.0
    """Wall-clock limit per command, seconds."""
    cpu_s: int = 0
    """CPU-time limit per process (RLIMIT_CPU: each process of the sandbox, forked ones
    included, counts its own time), seconds: SIGXCPU at this, SIGKILL one second later;
    0 = the whole seconds of `timeout_s` plus 2."""
    memory_mb: int = 512
    """Address-space limit per process, MiB."""
    file_mb: int = 16
    """Largest file a process may write, MiB."""
    max_procs: int = 32
    """Processes (and threads) the sandbox may hold at once."""
    max_output_bytes: int = 65536
    """stdout/stderr kept per command; the rest is dropped with a note."""
    allow_unisolated: bool = False
    """Run untrusted code even where the host gives no namespaces (rlimits and the Python
    audit hook only, which a shell or ctypes goes around); False = refuse with an error."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_mb", "max_procs", "max_output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)}")

    @property
    def cpu_limit_s(self) -> int:
        return self.cpu_s or int(self.timeout_s) + 2

    @property
    def tree_memory_mb(self) -> int:
        """The memory bound of the whole sandbox: `memory_mb` per process x `max_procs`."""
        return self.memory_mb * self.max_procs


@dataclass
class SandboxResult:
    """What a sandboxed command did."""

    returncode: int
    """Exit status; -N when killed by signal N."""
    stdout: str
    stderr: str
    timed_out: bool
    """The wall-clock limit was hit and the process group was killed."""
    wall_s: float = 0.0
    signal: str = ""
    """Name of the signal that ended the process ('SIGKILL', 'SIGXCPU'), or ''."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @classmethod
    def from_json(cls, d: dict) -> SandboxResult:
        return cls(**{k: d[k] for k in ("returncode", "stdout", "stderr", "timed_out", "wall_s",
                                        "signal")})


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, or its session server died)."""


# ---------------------------------------------------------------------------------------------
# isolation plan: computed here, applied by the guest (sandbox_guest.isolate) before it drops
# privileges and execs the command or serves a session


def _shared_tmp() -> str:
    """/tmp (world-traversable) rather than $TMPDIR, which may sit under a 0700 folder."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def _private_dir(prefix: str) -> Path:
    """A fresh folder of this process (mkdtemp: new name, created atomically, owned by us),
    world-readable so that a dropped uid can use it, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_shared_tmp()))
    owner = os.getpid()

    def remove() -> None:  # not from a fork that inherited the cache and still shares the folder
        if os.getpid() == owner and folder.exists():
            folder.chmod(0o700)  # read-only (0555) for the sandboxes: rmtree needs to write
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


@functools.cache
def _stage_dir() -> str:
    """An empty folder the guest mounts the sandbox's new root filesystem on (in its own mount
    namespace: the host's folder stays empty)."""
    folder = _private_dir("youtu-sandbox-root-")
    folder.chmod(0o755)
    return str(folder)


@functools.cache
def _boot_dir() -> str:
    """A read-only folder with the guest module and a sitecustomize importing it: created by
    this process with mkdtemp (a fixed, reused path could be planted by another user, and its
    code would run before the uid drop)."""
    folder = _private_dir("youtu-sandbox-boot-")
    (folder / "youtu_sandbox_guest.py").write_text(Path(sandbox_guest.__file__).read_text())
    (folder / "sitecustomize.py").write_text("import youtu_sandbox_guest\n"
                                             "youtu_sandbox_guest.install_guard()\n")
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    if os.geteuid() == 0 and not _world_executable(str(folder)):
        raise SandboxError(f"{folder} is not reachable by an unprivileged uid: sandboxed Python "
                           "would run without its audit hook")
    return str(folder)


def _world_executable(path: str) -> bool:
    """True when an unprivileged uid can execute `path` (every ancestor o+x)."""
    p = Path(path).resolve()
    return all(os.stat(q).st_mode & 0o001 for q in [p, *p.parents])


@functools.cache
def _python() -> str:
    """The interpreter sandboxes run: ours if a dropped uid can reach it, else the system one."""
    if os.access(sys.executable, os.X_OK) and (os.geteuid() != 0
                                                or _world_executable(sys.executable)):
        return sys.executable
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(cand) and _world_executable(cand):
            return cand
    return sys.executable


def _binds() -> list[str]:
    """Host paths bound read-only into every sandbox: system folders, the interpreters'
    prefixes (a virtualenv and its base) and the boot folder; none nested in another."""
    exe = os.path.realpath(_python())
    ours = [sys.prefix, sys.base_prefix] if _python() == sys.executable else []  # a venv + base
    cands = [*_SYSTEM_PATHS, *ours, os.path.dirname(os.path.dirname(exe)), _boot_dir()]
    paths = sorted({os.path.abspath(p) for p in cands if os.path.lexists(p)})
    out: list[str] = []
    for p in paths:  # sorted: a parent comes before what it holds
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out
                   if not os.path.islink(q)):
            out.append(p)
    return out


@functools.cache
def isolation() -> dict[str, object]:
    """What isolation this host gives: {'namespaces': 'root'|'user'|'none', 'pid_ns': bool,
    'uid_drop': bool, 'python': interpreter}. A user namespace counts only with its own PID
    namespace (without one, sandboxed code shares the host user's processes and signals)."""
    info: dict[str, object] = {"uid_drop": os.geteuid() == 0, "namespaces": "none",
                               "pid_ns": False, "python": _python()}
    modes = [("root", True), ("root", False)] if os.geteuid() == 0 else []
    for mode, pid_ns in [*modes, ("user", True)]:
        workdir = tempfile.mkdtemp(prefix="youtu-sbx-probe-")
        try:
            proc, _ = _spawn(["--exec", "/bin/true"], workdir,
                             SandboxLimits(timeout_s=5, allow_unisolated=True),
                             subprocess.DEVNULL, namespaces=mode, pid_ns=pid_ns)
            _, err = proc.communicate(timeout=10)
            if proc.returncode == 0:
                info["namespaces"], info["pid_ns"] = mode, pid_ns
                break
            logger.debug("sandbox probe %s (pid_ns=%s) failed: %s", mode, pid_ns, err)
        except (subprocess.SubprocessError, OSError, SandboxError):
            continue
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if info["namespaces"] == "none":
        logger.warning("sandbox: no network/mount/PID namespaces on this host; untrusted code "
                       "is refused unless allow_unisolated = true")
    return info


def _unisolated_allowed(limits: SandboxLimits) -> bool:
    return limits.allow_unisolated or os.environ.get(ALLOW_UNISOLATED_ENV, "") == "1"


_uid_counter = 0
_uid_lock = threading.Lock()


def _new_uid() -> int:
    global _uid_counter
    with _uid_lock:
        _uid_counter = (_uid_counter + 1) % 128
        return _UID_BASE + (os.getpid() % 4_000_000) * 128 + _uid_counter


def _plan(workdir: str, limits: SandboxLimits, namespaces: str, pid_ns: bool,
          uid: int | None) -> dict:
    """What the guest must set up: see `sandbox_guest.isolate`."""
    # + the guest's init (PID 1); in a user namespace the guest's parent counts too (RLIMIT_NPROC
    # counts the processes of the uid in that namespace only); without namespaces it counts all
    # of this user's processes
    nproc = limits.max_procs + 1 + (namespaces == "user")
    if uid is None and namespaces == "none":
        nproc += len(_user_processes(os.getuid()))
    isolated = namespaces != "none"
    return {"workdir": os.path.realpath(workdir),
            "view": _VIEW if isolated else os.path.realpath(workdir),
            "namespaces": namespaces, "pid_ns": isolated and pid_ns, "uid": uid,
            "stage": _stage_dir() if isolated else "", "binds": _binds() if isolated else [],
            "files": [os.path.join(d, n) for d, ds, fs in os.walk(workdir) for n in ds + fs],
            "limits": {"cpu_s": limits.cpu_limit_s, "memory_bytes": limits.memory_mb * 2**20,
                       "file_bytes": limits.file_mb * 2**20, "nproc": nproc}}


def _user_processes(uid: int) -> list[int]:
    """Live processes whose real uid is `uid` (read from /proc/<pid>/status: the owner of
    /proc/<pid> is root for non-dumpable processes, such as a session server's forks)."""
    return [int(p) for p in os.listdir("/proc")
            if p.isdigit() and sandbox_guest._live_uid(p) == uid]


def _kill_all(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the sandbox's process group and, when it has its own uid, every process of it
    (which also catches processes that called setsid). Repeats while a fork races the kill."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return
    for _ in range(20):
        pids = _user_processes(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def clean_env(view: str) -> dict[str, str]:
    """The whole environment a sandboxed process sees (`view`: its workdir, as it sees it)."""
    python_dir = os.path.dirname(_python())
    return {"PATH": f"{python_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": view,
            "TMPDIR": view, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONPATH": _boot_dir(), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0", "YOUTU_SANDBOX_WORKDIR": view}


def _spawn(guest_args: list[str], workdir: str, limits: SandboxLimits, stdin: int | None,
           stderr: int | None = subprocess.PIPE, namespaces: str | None = None,
           pid_ns: bool | None = None) -> tuple[subprocess.Popen, int | None]:
    """Start the guest (`--exec ARGV...` or `--serve`): no preexec_fn, so Popen uses vfork."""
    if namespaces is None:
        info = isolation()
        namespaces, pid_ns = str(info["namespaces"]), bool(info["pid_ns"])
    if namespaces == "none" and not _unisolated_allowed(limits):
        raise SandboxError("this host gives the sandbox no namespaces (no root, no unprivileged "
                           "user namespaces): untrusted code would run with rlimits and an audit "
                           "hook only, which a shell or ctypes escapes; refused. Set "
                           "allow_unisolated = true (SandboxLimits(allow_unisolated=True), "
                           f"[synth] allow_unisolated, or {ALLOW_UNISOLATED_ENV}=1) to run anyway")
    uid = _new_uid() if os.geteuid() == 0 else None
    plan = _plan(workdir, limits, namespaces, bool(pid_ns), uid)
    env = clean_env(plan["view"])
    env["YOUTU_SANDBOX_MAX_OUTPUT"] = str(limits.max_output_bytes)
    env["YOUTU_SANDBOX_PLAN"] = marshal.dumps(plan).hex()  # the guest decodes without json
    guest = os.path.join(_boot_dir(), "youtu_sandbox_guest.py")
    try:
        proc = subprocess.Popen([_python(), "-I", "-S", "-B", guest, *guest_args], cwd=workdir,
                                env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True, close_fds=True)
    except OSError as e:
        raise SandboxError(f"could not start a sandbox: {e}") from e
    return proc, uid


def _collect(proc: subprocess.Popen, uid: int | None, limits: SandboxLimits,
             ) -> tuple[str, str, bool]:
    """(stdout, stderr, timed out) of a started `--exec` guest. Reading stops at EOF, at the
    timeout (then the whole tree is killed), or shortly after the command exits while
    something it left behind still holds its pipes; within 1 s of the timeout in any case."""
    assert proc.stdout is not None and proc.stderr is not None
    fds = [proc.stdout.fileno(), proc.stderr.fileno()]
    limit = limits.max_output_bytes
    deadline = time.monotonic() + limits.timeout_s
    out, timed_out, dropped = sandbox_guest.read_limited(fds, deadline, limit,
                                                         lambda: proc.poll() is not None)
    _kill_all(proc, uid)  # at the timeout, and leftovers a command started in the background
    if timed_out:  # what was written before the kill; the pipes of a killed tree reach EOF
        more, _, more_dropped = sandbox_guest.read_limited(fds, time.monotonic() + 0.5, limit)
        for fd in fds:
            room = max(limit - len(out[fd]), 0)
            out[fd] += more[fd][:room]
            dropped[fd] += more_dropped[fd] + max(len(more[fd]) - room, 0)
    proc.stdout.close()
    proc.stderr.close()
    proc.wait()
    return (*(sandbox_guest._decode(out[fd], dropped[fd]) for fd in fds), timed_out)


def _write_files(workdir: str, files: dict[str, str] | None) -> None:
    for rel, text in (files or {}).items():
        path = Path(workdir, rel)
        if not path.resolve().is_relative_to(Path(workdir).resolve()):
            raise ValueError(f"file {rel!r} would land outside the sandbox workdir")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_command(cmd: list[str] | str, *, workdir: str | Path | None = None,
                files: dict[str, str] | None = None, timeout_s: float = 10.0,
                memory_mb: int = 512, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `cmd` (argv list, or a string for /bin/sh -c) in a fresh sandbox.

    Args:
        cmd: the command.
        workdir: folder to run in (kept afterwards); None = a private temp folder, deleted after.
        files: {relative path: text} written into the workdir first.
        timeout_s: wall-clock limit (ignored when `limits` is given).
        memory_mb: address-space limit (ignored when `limits` is given).
        limits: every limit at once.
    """
    limits = limits or SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    own = workdir is None
    folder = tempfile.mkdtemp(prefix="youtu-sbx-") if own else str(workdir)
    try:
        _write_files(folder, files)
        start = time.monotonic()
        proc, uid = _spawn(["--exec", *argv], folder, limits, subprocess.DEVNULL)
        out, err, timed_out = _collect(proc, uid, limits)
        rc = proc.returncode
        sig = signal.Signals(-rc).name if rc < 0 else ""
        return SandboxResult(returncode=rc, stdout=out, stderr=err, timed_out=timed_out,
                             wall_s=time.monotonic() - start, signal=sig)
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512,
               files: dict[str, str] | None = None, workdir: str | Path | None = None,
               limits: SandboxLimits | None = None) -> SandboxResult:
    """Run Python source `code` as `main.py` in a fresh sandbox (see `run_command`)."""
    files = {**(files or {}), "main.py": code}
    # Relative paths only: the dropped uid may not traverse the workdir's ancestors (pytest's
    # tmp_path is under a 0700 folder) but its cwd was entered as root; runpy would abspath.
    boot = ("import sys; sys.path.insert(0, ''); "
            "exec(compile(open('main.py').read(), 'main.py', 'exec'), {'__name__': '__main__'})")
    return run_command([_python(), "-B", "-c", boot], workdir=workdir, files=files,
                       timeout_s=timeout_s, memory_mb=memory_mb, limits=limits)


class Sandbox:
    """One sandbox process for a whole episode; each request runs in a forked child of it.

    Args:
        limits: resource limits (the wall-clock limit applies per request).
        files: {relative path: text} written into the private workdir before start.
    """

    def __init__(self, limits: SandboxLimits | None = None, files: dict[str, str] | None = None):
        self.limits = limits or SandboxLimits()
        self.workdir = tempfile.mkdtemp(prefix="youtu-sbx-")
        self._proc: subprocess.Popen | None = None
        try:
            _write_files(self.workdir, files)
            self._proc, self._uid = _spawn(["--serve"], self.workdir, self.limits,
                                           subprocess.PIPE, subprocess.DEVNULL)
        except (OSError, ValueError, SandboxError):
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._buffer = b""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process of the sandbox and delete its workdir."""
        if self._proc is None:
            return
        try:  # the server kills its uid's other processes and exits: no fork of ours needed
            assert self._proc.stdin is not None
            self._proc.stdin.write(marshal.dumps({"op": "exit"}).hex().encode() + b"\n")
            self._proc.stdin.flush()
            self._proc.wait(timeout=2)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass
        _kill_all(self._proc, self._uid)
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _request(self, req: dict, timeout_s: float) -> dict:
        if self._proc is None:
            raise SandboxError("this sandbox is closed")
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(marshal.dumps(req).hex().encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError as e:
            raise SandboxError(f"sandbox server died (exit {self._proc.poll()})") from e
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s + 5.0  # the guest enforces timeout_s itself
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                self.close()
                raise SandboxError("sandbox server stopped answering; killed it")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise SandboxError(f"sandbox server died (exit {self._proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, cmd: str, timeout_s: float | None = None) -> SandboxResult:
        """Run shell command `cmd` in the workdir."""
        t = timeout_s or self.limits.timeout_s
        reply = self._request({"op": "sh", "cmd": cmd, "timeout_s": t}, t)
        if "error" in reply:
            return SandboxResult(returncode=1, stdout="", stderr=reply["error"], timed_out=False)
        return SandboxResult.from_json(reply)

    def run_python(self, code: str, timeout_s: float | None = None) -> SandboxResult:
        """Run Python source in a forked child (the workdir is first on sys.path)."""
        t = timeout_s or self.limits.timeout_s
        reply = self._request({"op": "py", "code": code, "timeout_s": t}, t)
        if "error" in reply:
            return SandboxResult(returncode=1, stdout="", stderr=reply["error"], timed_out=False)
        return SandboxResult.from_json(reply)

    def read_file(self, path: str) -> str:
        """Text of `path` (relative to the workdir), read by the sandbox's own uid."""
        reply = self._request({"op": "read", "path": path}, 5.0)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply["text"]

    @property
    def can_reset(self) -> bool:
        """`reset` needs a sandbox whose processes can all be found: its own PID namespace or
        uid (a root host)."""
        return self._uid is not None or bool(isolation()["pid_ns"])

    def reset(self, files: dict[str, str] | None = None) -> None:
        """Make this sandbox as good as a new one (no process, empty workdir, then `files`)
        at a fraction of the start-up cost (~1 ms vs ~15 ms of CPU): every other process of
        the sandbox's uid is killed, the workdir emptied. The server cannot have been tampered
        with: guest code only runs in its forks and it is not ptrace-able (PR_SET_DUMPABLE 0)."""
        if not self.can_reset:  # strays could only be found by process group
            raise SandboxError("reset needs a sandbox with its own PID namespace or uid; use a "
                               "new Sandbox instead")
        reply = self._request({"op": "reset", "files": dict(files or {})}, 5.0)
        if "error" in reply:
            raise SandboxError(f"reset failed: {reply['error']}")

    def write_file(self, path: str, text: str) -> str:
        """Write `path` (relative to the workdir) as the sandbox's uid; returns a short note."""
        reply = self._request({"op": "write", "path": path, "text": text}, 5.0)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply["text"]
