"""Code that runs INSIDE a sandbox process (stdlib only; see `youtu.agentic.sandbox`).

Three entry points, copied by the host into a read-only boot folder:

- `install_guard()`: a `sys.addaudithook` guard, loaded through `sitecustomize` by every Python
  the sandbox starts. It refuses internet sockets and writes outside the working directory. An
  audit hook is not a security boundary on its own (ctypes can go around it); it is the
  in-process layer over the OS one (network/mount namespaces, a dropped uid, rlimits), and the
  only layer left where namespaces are unavailable.
- `serve()` (`python -I -S sandbox_guest.py --serve`): a session server. One sandbox process per
  episode answers newline-delimited JSON requests on stdin: `sh` (a shell command), `py` (Python
  source run in a forked child), `read`, `write`. Commands run in forked children so each gets
  its own wall-clock timeout and process-group kill, without paying namespace setup and
  interpreter start-up per step (a fork costs ~1 ms, a fresh sandbox ~15 ms).
- `isolate(plan)`: the process-level setup, run first by both `--serve` and `--exec ARGV...`
  while still privileged: chown the workdir to the sandbox uid, new network + mount (+ user)
  + PID namespaces, a fork that becomes PID 1 (this process stays outside as its parent and
  ends as the command did), a fresh read-only root with the workdir at a fixed path, rlimits,
  then the drop to the sandbox uid (root) or of every capability (user namespace). With a PID
  namespace, `--exec` runs the command under that PID 1, which reaps orphans and whose exit
  kills whatever the command left. The host passes the plan (marshal, hex) in
  $YOUTU_SANDBOX_PLAN. Doing this here,
  not in a `preexec_fn`, lets the host start sandboxes with vfork instead of copying its own
  (large, sympy-laden) address space: 7 ms per start on the 2-core box.
"""

import os
import sys

# The guard runs in every sandboxed Python (via sitecustomize): keep its imports to os and sys
# (importing json/select/signal here doubled interpreter start-up, 11 -> 23 ms).

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_guard(workdir=None):
    """Refuse non-Unix sockets, name lookups, UNIX socket connections (or datagrams) to
    anything but a socket file inside `workdir`, and file writes outside it (default:
    $YOUTU_SANDBOX_WORKDIR). socketpair() and servers inside the workdir keep working."""
    root = os.path.realpath(workdir or os.environ.get("YOUTU_SANDBOX_WORKDIR") or os.getcwd())
    allowed_files = {"/dev/null"}
    unix_family = 1  # socket.AF_UNIX; importing socket here would cost start-up time

    def guard(event, args):
        if event == "socket.__new__":
            family = args[1]
            if family != unix_family:
                raise PermissionError("sandbox: network access is disabled")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            raise PermissionError("sandbox: network access is disabled")
        elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1]
            if getattr(args[0], "family", None) != unix_family or address is None:
                return
            name = os.fsdecode(address) if isinstance(address, (str, bytes)) else ""
            real = os.path.realpath(name) if name and not name.startswith("\0") else ""
            if not (real == root or real.startswith(root + os.sep)):
                raise PermissionError("sandbox: UNIX sockets outside the working directory "
                                      "are disabled")
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if not writing:
                return
            real = os.path.realpath(os.fsdecode(path))
            if real in allowed_files or real == root or real.startswith(root + os.sep):
                return
            raise PermissionError(f"sandbox: writing outside the working directory: {real}")

    sys.addaudithook(guard)


def read_limited(fds, deadline, limit, exited=None, grace_s=0.1):
    """Read fds until EOF or `deadline`, keeping at most `limit` bytes of each; when
    `exited()` turns true (the command ended), go on for at most `grace_s` more: a daemon the
    command left holding its stdout does not stretch the call.

    Returns (bytes per fd, timed out, bytes dropped per fd)."""
    import select
    import time
    out = {fd: bytearray() for fd in fds}
    dropped = {fd: 0 for fd in fds}
    open_fds = list(fds)
    end = deadline
    while open_fds:
        now = time.monotonic()
        if now >= end:
            return out, end == deadline, dropped
        if exited is not None and end == deadline and exited():
            end = min(deadline, now + grace_s)
        ready, _, _ = select.select(open_fds, [], [], min(end - now, 0.05))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.remove(fd)
                continue
            room = limit - len(out[fd])
            out[fd] += chunk[:max(room, 0)]
            dropped[fd] += max(len(chunk) - max(room, 0), 0)
    return out, False, dropped


def _run_forked(child, timeout_s, limit, scoped):
    """Fork; the child runs `child()` (which execs or exits) with stdout/stderr on pipes. At
    the timeout the child's process group is killed and, when the sandbox has its own PID
    namespace or uid (`scoped`), every other process of it too: nothing the command started
    outlives it, setsid or double fork included."""
    import signal
    import time
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)  # stdin carries the session protocol: never the guest's
            os.close(devnull)
            os.close(out_r)
            os.close(err_r)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.close(out_w)
            os.close(err_w)
            child()
        finally:
            os._exit(127)
    os.close(out_w)
    os.close(err_w)
    status = []

    def exited():
        if not status:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(st)
        return bool(status)

    out, timed_out, dropped = read_limited([out_r, err_r], start + timeout_s, limit, exited)
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not status:
        status.append(os.waitpid(pid, 0)[1])
    if timed_out and scoped:
        _kill_others()
    _reap()
    os.close(out_r)
    os.close(err_r)
    sig = os.WTERMSIG(status[0]) if os.WIFSIGNALED(status[0]) else 0
    return {
        "returncode": -sig if sig else os.WEXITSTATUS(status[0]),
        "stdout": _decode(out[out_r], dropped[out_r]),
        "stderr": _decode(out[err_r], dropped[err_r]),
        "timed_out": timed_out,
        "wall_s": time.monotonic() - start,
        "signal": signal.Signals(sig).name if sig else "",
    }


def _reap():
    """Collect exited orphans (the server is PID 1 of its namespace: they are its children)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _decode(data, dropped):
    text = bytes(data).decode("utf-8", "replace")
    return text + (f"\n[... {dropped} more bytes truncated]" if dropped else "")


def _exec_python(code, workdir):
    def child():
        sys.path.insert(0, workdir)
        status = 0
        try:
            exec(compile(code, "<sandbox>", "exec"), {"__name__": "__main__"})
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:  # the guest's own traceback is the observation
            import traceback
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return child


def _exec_shell(cmd):
    def child():
        os.execv("/bin/sh", ["sh", "-c", cmd])
    return child


def _inside(workdir, path):
    real = os.path.realpath(os.path.join(workdir, path))
    if real != workdir and not real.startswith(workdir + os.sep):
        raise PermissionError(f"{path}: outside the working directory")
    return real


def _handle(req, workdir, limit, scoped):
    import stat
    op = req.get("op")
    timeout_s = float(req.get("timeout_s", 10))
    if op == "sh":
        return _run_forked(_exec_shell(req["cmd"]), timeout_s, limit, scoped)
    if op == "py":
        return _run_forked(_exec_python(req["code"], workdir), timeout_s, limit, scoped)
    if op == "read":
        path = _inside(workdir, req["path"])
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never block on a FIFO
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{req['path']}: not a regular file")
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        return {"text": _decode(data[:limit], max(len(data) - limit, 0))}
    if op == "write":
        path = _inside(workdir, req["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(req["text"])
        return {"text": f"wrote {len(req['text'].encode())} bytes to {req['path']}"}
    raise ValueError(f"unknown op {op!r}")


def _not_dumpable():
    """PR_SET_DUMPABLE 0: code the server forks runs as the same uid, but cannot ptrace the
    server or write its /proc/<pid>/mem, so a `reset` server is as clean as a new one."""
    import ctypes
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE = 4
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")


def _live_uid(pid):
    """Real uid of a live (not zombie) process, else None. /proc/<pid>/status, not the owner
    of /proc/<pid>: a non-dumpable process's /proc entries belong to root."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    if fields.get("State", "").split()[:1] == ["Z"]:
        return None
    return int(fields["Uid"].split()[0])


def _kill_others():
    """SIGKILL every other process of this uid (in a PID namespace: of the namespace) and wait
    until none is left alive (signal delivery is asynchronous; zombies are dead already)."""
    import signal
    import time
    me, uid = os.getpid(), os.getuid()
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # nothing left to signal
            pass
        alive = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) != me:
                alive |= _live_uid(pid) == uid
        if not alive:
            _reap()
            return
        _reap()
        time.sleep(0.001)


def _reset(workdir, files, scoped):
    """A fresh sandbox without a new process: kill every other process of the sandbox, empty
    the workdir, write `files`. (The server's memory is untouched by guest code: forks + no
    ptrace.)"""
    import shutil
    if scoped:
        _kill_others()
    for entry in os.scandir(workdir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    for rel, text in files.items():
        path = _inside(workdir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return {"text": f"reset with {len(files)} file(s)"}


def _to_json(reply):
    """A flat dict of str/int/float/bool as one JSON line, with the C string encoder only
    (importing the json package costs 8.5 ms of CPU per sandbox start)."""
    from _json import encode_basestring_ascii as enc
    parts = []
    for k, v in reply.items():
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (int, float)):
            text = repr(v)
        else:
            text = enc(str(v))
        parts.append(enc(k) + ":" + text)
    return "{" + ",".join(parts) + "}\n"


def serve(scoped):
    """Answer requests on stdin until EOF or an `exit` request (`scoped`: the sandbox has its
    own PID namespace or uid, so "every other process" is exactly the sandbox's).

    Requests are `marshal` dicts, hex-encoded, one per line (host -> guest, trusted); replies
    are JSON lines (guest -> host: the host parses them with json, never marshal).
    """
    import marshal
    import signal
    workdir = os.path.realpath(os.getcwd())
    _not_dumpable()
    install_guard(workdir)
    limit = int(os.environ.get("YOUTU_SANDBOX_MAX_OUTPUT", "65536"))
    for line in sys.stdin:
        req = marshal.loads(bytes.fromhex(line.strip()))
        if req.get("op") == "exit":
            break
        try:
            if req.get("op") == "reset":
                reply = _reset(workdir, req["files"], scoped)
            else:
                reply = _handle(req, workdir, limit, scoped)
        except Exception as e:  # reported to the host as the tool's error observation
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(_to_json(reply))
        sys.stdout.flush()
    if scoped:  # every other process of the sandbox: background jobs, escaped forks
        try:
            os.kill(-1, signal.SIGKILL)  # the host checks they are gone (_kill_all)
        except ProcessLookupError:
            pass


_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (0x00020000, 0x10000000,
                                                              0x20000000, 0x40000000)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MOUNT_FLAGS = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
                "relatime": 1 << 21}
"""Per-mount flags a read-only remount must keep (locked in user namespaces): MS_* values."""
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_DEVICES = ("null", "zero", "full", "random", "urandom")
SANDBOX_UID = 1000
"""The uid sandboxed code has inside a user namespace (mapped to the host user)."""


def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    return libc


def _check(libc, rc, what):
    if rc != 0:
        import ctypes
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox setup: {what}: {os.strerror(err)}")


def _mountinfo():
    """(mount point, flags to keep) for every mount of this process's root, parents first."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = os.fsdecode(fields[4].decode("unicode_escape").encode("latin-1"))  # \040
            flags = 0
            for opt in fields[5].decode().split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            out.append((point, flags))
    return out


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _new_root(libc, plan):
    """Build the sandbox's filesystem on a fresh tmpfs and pivot into it: the system folders
    and the interpreter read-only, the workdir read-write at `view`, five device nodes, and a
    /proc of the sandbox's own PID namespace. Nothing else of the host (its /tmp with UNIX
    sockets, /home, /root, /run, /sys) exists inside."""
    stage = plan["stage"]
    _check(libc, libc.mount(b"tmpfs", os.fsencode(stage), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                            b"size=1m,mode=755"), "tmpfs root")

    def inside(path):
        return stage + path

    for src in plan["binds"]:
        dst = inside(src)
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if os.path.isdir(src):
            os.makedirs(dst, mode=0o755, exist_ok=True)
        else:
            open(dst, "w").close()
        _check(libc, libc.mount(os.fsencode(src), os.fsencode(dst), None, _MS_BIND | _MS_REC,
                                None), f"bind {src}")
    os.makedirs(inside("/dev"), mode=0o755)
    for name in _DEVICES:
        open(inside(f"/dev/{name}"), "w").close()
        _check(libc, libc.mount(os.fsencode(f"/dev/{name}"), os.fsencode(inside(f"/dev/{name}")),
                                None, _MS_BIND, None), f"bind /dev/{name}")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", inside(f"/dev/{name}"))
    os.symlink("/proc/self/fd", inside("/dev/fd"))
    view = inside(plan["view"])
    os.makedirs(view, mode=0o755, exist_ok=True)
    _check(libc, libc.mount(os.fsencode(plan["workdir"]), os.fsencode(view), None,
                            _MS_BIND | _MS_REC, None), "bind the workdir")
    os.makedirs(inside("/proc"), mode=0o555)
    _check(libc, libc.mount(b"proc", os.fsencode(inside("/proc")), b"proc",
                            _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    os.chdir(stage)
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(f"sandbox setup: pivot_root number unknown on {os.uname().machine}")
    _check(libc, libc.syscall(nr, b".", b"."), "pivot_root")
    _check(libc, libc.umount2(b".", 2), "detach the host root")  # MNT_DETACH
    os.chdir("/")
    for point, keep in _mountinfo():
        if point in (plan["view"], "/proc"):
            continue
        # Mounts that refuse (already read-only, locked) stay as they are.
        libc.mount(None, os.fsencode(point), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep,
                   None)


def _drop_capabilities(libc):
    """No capabilities left (inside a user namespace the creator holds all of them until it
    execs, and `py` requests run without exec): no remount, ptrace, or namespace changes."""
    import ctypes
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP; stops at the first unknown cap number
    _check(libc, libc.capset(header, data), "drop capabilities")


def isolate(plan):
    """Apply the host's isolation plan to this (still privileged) process.

    Returns (pid of the sandbox's init, read end of its status pipe) in the parent when a PID
    namespace was made (this process then waits for the init and ends as the command did),
    else None: the init, or the process without a PID namespace, goes on with the command.
    The init reports the command's wait status on the pipe: it cannot die of a signal itself
    (PID 1 ignores its own), so its exit status cannot say "killed by SIGXCPU"."""
    import resource
    uid = plan["uid"]
    if uid is not None:  # before the mounts go read-only
        os.chown(plan["workdir"], uid, uid)
        for path in plan["files"]:
            os.lchown(path, uid, uid)
    libc = None
    if plan["namespaces"] != "none":
        libc = _libc()
        user = plan["namespaces"] == "user"
        flags = _CLONE_NEWNS | _CLONE_NEWNET | (_CLONE_NEWUSER if user else 0)
        host_uid, host_gid = os.getuid(), os.getgid()
        _check(libc, libc.unshare(flags | (_CLONE_NEWPID if plan["pid_ns"] else 0)), "unshare")
        if user:  # the host user is SANDBOX_UID inside: not root, so exec keeps no capability
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{SANDBOX_UID} {host_uid} 1\n")
            _write("/proc/self/gid_map", f"{SANDBOX_UID} {host_gid} 1\n")
        if plan["pid_ns"]:
            status_r, status_w = os.pipe()  # close-on-exec: the command never holds it
            init = os.fork()
            if init:
                os.close(status_w)
                return init, status_r
            os.close(status_r)
            os.environ["YOUTU_SANDBOX_STATUS_FD"] = str(status_w)
            libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL: dies with its parent
        _check(libc, libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None),
               "make / private")
        _new_root(libc, plan)
    os.chdir(plan["view"])
    lim = plan["limits"]
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_bytes"], lim["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif plan["namespaces"] == "user":
        _drop_capabilities(libc)
    if libc is not None:
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binary gives them back
    return None


def _wait_as_parent(init, status_fd):
    """The host-side parent of the sandbox's init: wait for it, then end as the command did."""
    import resource
    import signal
    reported = b""
    while chunk := os.read(status_fd, 64):
        reported += chunk
    _, status = os.waitpid(init, 0)
    if reported.strip().isdigit():
        status = int(reported)
    if os.WIFSIGNALED(status):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU, SIGSEGV: no core dump
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _run_as_init(argv):
    """PID 1 of the sandbox: run the command, reap every orphan, and exit with the command's
    status; the kernel then kills every process left in the namespace (daemons included)."""
    _not_dumpable()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, os.environ)
        except OSError as e:
            print(f"sandbox: cannot run {argv[0]}: {e}", file=sys.stderr)
        os._exit(127)
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            os._exit(127)
        if done == pid:
            break
    _report_status(status)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _report_status(status):
    fd = int(os.environ.pop("YOUTU_SANDBOX_STATUS_FD", "-1"))
    if fd >= 0:
        os.write(fd, str(status).encode())
        os.close(fd)


def main(argv):
    import marshal
    plan = marshal.loads(bytes.fromhex(os.environ.pop("YOUTU_SANDBOX_PLAN")))
    try:
        init = isolate(plan)
    except OSError as e:
        print(f"sandbox setup failed: {e}", file=sys.stderr)
        os._exit(126)
    if init is not None:
        _wait_as_parent(*init)
    scoped = plan["uid"] is not None or plan["pid_ns"]
    if argv[0] == "--serve":
        serve(scoped)
        return
    assert argv[0] == "--exec", argv
    if plan["pid_ns"]:
        _run_as_init(argv[1:])
    try:
        os.execvpe(argv[1], argv[1:], os.environ)
    except OSError as e:
        print(f"sandbox: cannot run {argv[1]}: {e}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
