"""Run untrusted code (model- or teacher-written) in a separate, limited process.

    res = run_python("print(sum(range(10)))", timeout_s=5, memory_mb=256)
    res.stdout, res.returncode, res.timed_out
    res = run_command(["ls", "-la"], workdir=folder)
    with Sandbox() as box:                       # one process for a whole episode
        box.write_file("solution.py", src)
        box.run("python3 -c 'import solution'")
        box.run_python("import solution; print(solution.f(2))")

Layers (each proved by a test in tests/agentic/test_sandbox.py):

- rlimits set in `preexec_fn`: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size
  (RLIMIT_FSIZE), process count (RLIMIT_NPROC), no core dumps, 256 open files;
- a wall-clock timeout that kills the whole process group (and, when the host is root, every
  process of the sandbox's own uid, which also catches processes that called setsid);
- a private temporary working directory, a clean environment (PATH, HOME=TMPDIR=workdir, UTF-8);
- when the host can (root, or unprivileged user namespaces), new network and mount namespaces:
  no network interface but a down loopback, and every mount read-only except the workdir;
- as root, a drop to a fresh unprivileged uid per sandbox (RLIMIT_NPROC does not bind root,
  and the uid scopes process counting and the final kill to this sandbox);
- for Python, an audit hook (`sandbox_guest.install_guard`) refusing internet sockets and writes
  outside the workdir; the only layer left where namespaces are unavailable (then a warning).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import resource
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

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_MOUNT_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
                "noatime": _MS_NOATIME, "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME}
_WORKSPACE = "youtu-workspace"
"""Where the workdir appears inside a sandbox with a mount namespace (<tempdir>/youtu-workspace):
a fixed path keeps tracebacks and `pwd` output identical from run to run."""
_UID_BASE = 1_000_000
"""Sandbox uids are _UID_BASE + host pid * 128 + counter: unique per live sandbox, < 2**31."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox."""

    timeout_s: float = 10.0
    """Wall-clock limit per command, seconds."""
    cpu_s: int = 0
    """CPU-time limit of the whole sandbox, seconds; 0 = the timeout rounded up, plus 1."""
    memory_mb: int = 512
    """Address-space limit per process, MiB."""
    file_mb: int = 16
    """Largest file a process may write, MiB."""
    max_procs: int = 32
    """Processes (and threads) the sandbox may hold at once."""
    max_output_bytes: int = 65536
    """stdout/stderr kept per command; the rest is dropped with a note."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_mb", "max_procs", "max_output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)}")

    @property
    def cpu_limit_s(self) -> int:
        return self.cpu_s or int(self.timeout_s) + 2


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
# isolation plan: what this host can do, probed once per process


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _mounts() -> list[tuple[bytes, int]]:
    """(mount point, flags to keep) for every mount, parents first (from /proc/self/mountinfo)."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = fields[4].decode("unicode_escape").encode("latin-1")  # \040 -> space
            flags = 0
            for opt in fields[5].decode().split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            out.append((point, flags))
    return out


def _shared_tmp() -> str:
    """/tmp (world-traversable) rather than $TMPDIR, which may sit under a 0700 folder."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


@functools.cache
def _workspace() -> str:
    """The (empty, root-owned) mount point every sandbox binds its own workdir onto."""
    path = os.path.join(_shared_tmp(), _WORKSPACE)
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


@functools.cache
def _boot_dir() -> str:
    """A root-owned, read-only folder with the guest module and a sitecustomize importing it."""
    source = Path(sandbox_guest.__file__).read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    folder = Path(_shared_tmp()) / f"youtu-sandbox-boot-{os.getuid()}-{digest}"
    if not (folder / "sitecustomize.py").exists():
        tmp = Path(tempfile.mkdtemp(prefix="youtu-sandbox-boot-", dir=_shared_tmp()))
        (tmp / "youtu_sandbox_guest.py").write_text(source)
        (tmp / "sitecustomize.py").write_text("import youtu_sandbox_guest\n"
                                              "youtu_sandbox_guest.install_guard()\n")
        for p in tmp.iterdir():
            p.chmod(0o444)
        tmp.chmod(0o555)
        try:
            tmp.rename(folder)
        except OSError:  # another process won the race; use its folder
            shutil.rmtree(tmp, ignore_errors=True)
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
    if os.geteuid() != 0 or _world_executable(sys.executable):
        return sys.executable
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(cand) and _world_executable(cand):
            return cand
    return sys.executable


@functools.cache
def isolation() -> dict[str, object]:
    """What isolation this host gives sandboxes: {'namespaces': 'root'|'user'|'none', 'uid_drop'}."""
    info: dict[str, object] = {"uid_drop": os.geteuid() == 0, "namespaces": "none",
                               "python": _python()}
    for mode in ("root", "user") if os.geteuid() == 0 else ("user",):
        workdir = tempfile.mkdtemp(prefix="youtu-sbx-probe-")
        try:
            plan = _Plan(workdir, SandboxLimits(timeout_s=5), namespaces=mode,
                         uid=_new_uid() if info["uid_drop"] else None)
            subprocess.run(["/bin/true"], preexec_fn=plan.preexec, check=True, timeout=10,
                           env={}, cwd=workdir)
            info["namespaces"] = mode
            break
        except (subprocess.SubprocessError, OSError):
            continue
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if info["namespaces"] == "none":
        logger.warning("sandbox: no network/mount namespaces on this host; network and "
                       "filesystem isolation fall back to the Python audit hook only")
    return info


_uid_counter = 0
_uid_lock = threading.Lock()


def _new_uid() -> int:
    global _uid_counter
    with _uid_lock:
        _uid_counter = (_uid_counter + 1) % 128
        return _UID_BASE + (os.getpid() % 4_000_000) * 128 + _uid_counter


class _Plan:
    """Everything the forked child needs, computed before the fork (preexec must stay simple)."""

    def __init__(self, workdir: str, limits: SandboxLimits, namespaces: str, uid: int | None):
        self.workdir = os.path.realpath(workdir).encode()
        self.view = self.workdir
        if namespaces != "none":
            self.view = _workspace().encode()
        self.limits = limits
        self.namespaces = namespaces
        self.uid = uid
        self.mounts = _mounts() if namespaces != "none" else []
        self.libc = _libc() if namespaces != "none" else None
        self.nproc = limits.max_procs
        if uid is None:  # RLIMIT_NPROC counts all of this user's processes
            self.nproc += _count_user_processes()
        self.files = [os.path.join(d, n) for d, ds, fs in os.walk(workdir) for n in ds + fs]

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"sandbox: {what}: {os.strerror(err)}")

    def preexec(self) -> None:
        if self.uid is not None:  # before the mounts go read-only
            os.chown(self.workdir, self.uid, self.uid)
            for path in self.files:
                os.lchown(path, self.uid, self.uid)
        libc = self.libc
        if libc is not None:
            flags = _CLONE_NEWNS | _CLONE_NEWNET | (_CLONE_NEWUSER if self.namespaces == "user" else 0)
            self._check(libc.unshare(flags), "unshare")
            self._check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "private /")
            # The only writable place: the workdir, bound onto the fixed workspace path before
            # the rest goes read-only (a bind mount copies its source mount's flags).
            self._check(libc.mount(self.workdir, self.view, None, _MS_BIND | _MS_REC, None),
                        "bind workdir")
            for point, keep in self.mounts:
                # Mounts that refuse (already read-only, locked) stay as they are.
                libc.mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep, None)
            os.chdir(self.view)
        lim = self.limits
        cpu = lim.cpu_limit_s
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = lim.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = lim.file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)


def _count_user_processes() -> int:
    uid = os.getuid()
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                n += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
    return n


def _kill_all(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the sandbox's process group and, when it has its own uid, every process of it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return
    pid = os.fork()
    if pid == 0:  # kill(-1) as the sandbox uid reaches exactly that uid's processes
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def clean_env(workdir: str) -> dict[str, str]:
    """The whole environment a sandboxed process sees."""
    python_dir = os.path.dirname(_python())
    return {"PATH": f"{python_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": workdir,
            "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONPATH": _boot_dir(), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0", "YOUTU_SANDBOX_WORKDIR": os.path.realpath(workdir)}


def _spawn(argv: list[str], workdir: str, limits: SandboxLimits, stdin: int | None,
           stderr: int | None = subprocess.PIPE) -> tuple[subprocess.Popen, int | None]:
    iso = isolation()
    uid = _new_uid() if iso["uid_drop"] else None
    plan = _Plan(workdir, limits, str(iso["namespaces"]), uid)
    env = clean_env(plan.view.decode())
    env["YOUTU_SANDBOX_MAX_OUTPUT"] = str(limits.max_output_bytes)
    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=stderr, preexec_fn=plan.preexec,
                                start_new_session=True, close_fds=True)
    except subprocess.SubprocessError as e:
        raise SandboxError(f"could not start a sandbox for {argv[0]}: {e}") from e
    return proc, uid


def _write_files(workdir: str, files: dict[str, str] | None) -> None:
    for rel, text in (files or {}).items():
        path = Path(workdir, rel)
        if not path.resolve().is_relative_to(Path(workdir).resolve()):
            raise ValueError(f"file {rel!r} would land outside the sandbox workdir")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _decode(data: bytes, limit: int) -> str:
    extra = len(data) - limit
    text = data[:limit].decode("utf-8", "replace")
    return text + (f"\n[... {extra} more bytes truncated]" if extra > 0 else "")


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
        proc, uid = _spawn(argv, folder, limits, subprocess.DEVNULL)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_all(proc, uid)
            out, err = proc.communicate()
        else:
            _kill_all(proc, uid)  # leftovers a command started in the background
        rc = proc.returncode
        sig = signal.Signals(-rc).name if rc < 0 else ""
        return SandboxResult(returncode=rc, stdout=_decode(out, limits.max_output_bytes),
                             stderr=_decode(err, limits.max_output_bytes), timed_out=timed_out,
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
        _write_files(self.workdir, files)
        guest = os.path.join(_boot_dir(), "youtu_sandbox_guest.py")
        self._proc, self._uid = _spawn([_python(), "-I", "-S", "-B", guest, "--serve"],
                                       self.workdir, self.limits, subprocess.PIPE,
                                       subprocess.DEVNULL)
        self._buffer = b""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process of the sandbox and delete its workdir."""
        if self._proc is None:
            return
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
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
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

    def write_file(self, path: str, text: str) -> str:
        """Write `path` (relative to the workdir) as the sandbox's uid; returns a short note."""
        reply = self._request({"op": "write", "path": path, "text": text}, 5.0)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply["text"]
