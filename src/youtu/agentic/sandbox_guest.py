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
  while still privileged: chown the workdir to the sandbox uid, new network + mount namespaces,
  the workdir bound onto a fixed path and every other mount read-only, rlimits, then the drop
  to the sandbox uid. The host passes the plan as JSON in $YOUTU_SANDBOX_PLAN. Doing this here,
  not in a `preexec_fn`, lets the host start sandboxes with vfork instead of copying its own
  (large, sympy-laden) address space: 7 ms per start on the 2-core box.
"""

import os
import sys

# The guard runs in every sandboxed Python (via sitecustomize): keep its imports to os and sys
# (importing json/select/signal here doubled interpreter start-up, 11 -> 23 ms).

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_guard(workdir=None):
    """Refuse non-Unix sockets, name lookups and file writes outside `workdir` (default:
    $YOUTU_SANDBOX_WORKDIR)."""
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


def _read_limited(fds, deadline, limit):
    """Read fds until EOF or `deadline`, keeping at most `limit` bytes of each.

    Returns (bytes per fd, timed out, bytes dropped per fd)."""
    import select
    import time
    out = {fd: bytearray() for fd in fds}
    dropped = {fd: 0 for fd in fds}
    open_fds = list(fds)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, True, dropped
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.remove(fd)
                continue
            room = limit - len(out[fd])
            out[fd] += chunk[:max(room, 0)]
            dropped[fd] += max(len(chunk) - max(room, 0), 0)
    return out, False, dropped


def _run_forked(child, timeout_s, limit):
    """Fork; the child runs `child()` (which execs or exits) with stdout/stderr on pipes."""
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
    out, timed_out, dropped = _read_limited([out_r, err_r], start + timeout_s, limit)
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    os.close(out_r)
    os.close(err_r)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    return {
        "returncode": -sig if sig else os.WEXITSTATUS(status),
        "stdout": _decode(out[out_r], dropped[out_r]),
        "stderr": _decode(out[err_r], dropped[err_r]),
        "timed_out": timed_out,
        "wall_s": time.monotonic() - start,
        "signal": signal.Signals(sig).name if sig else "",
    }


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


def _handle(req, workdir, limit):
    import stat
    op = req.get("op")
    timeout_s = float(req.get("timeout_s", 10))
    if op == "sh":
        return _run_forked(_exec_shell(req["cmd"]), timeout_s, limit)
    if op == "py":
        return _run_forked(_exec_python(req["code"], workdir), timeout_s, limit)
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
    """SIGKILL every other process of this uid and wait until none is left alive (signal
    delivery is asynchronous; zombies waiting for init to reap them are dead already)."""
    import signal
    import time
    me, uid = os.getpid(), os.getuid()
    for _ in range(200):
        os.kill(-1, signal.SIGKILL)
        alive = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) != me:
                alive |= _live_uid(pid) == uid
        if not alive:
            return
        time.sleep(0.001)


def _reset(workdir, files, own_uid):
    """A fresh sandbox without a new process: kill every other process of the uid, empty the
    workdir, write `files`. (The server's memory is untouched by guest code: forks + no ptrace.)"""
    import shutil
    if own_uid:
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


def serve(own_uid):
    """Answer requests on stdin until EOF or an `exit` request.

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
                reply = _reset(workdir, req["files"], own_uid)
            else:
                reply = _handle(req, workdir, limit)
        except Exception as e:  # reported to the host as the tool's error observation
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(_to_json(reply))
        sys.stdout.flush()
    if own_uid:  # every other process of this sandbox's uid: background jobs, escaped forks
        os.kill(-1, signal.SIGKILL)  # the host checks they are gone (_kill_all)


_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def isolate(plan):
    """Apply the host's isolation plan to this (still privileged) process."""
    import resource
    uid = plan["uid"]
    if uid is not None:  # before the mounts go read-only
        os.chown(plan["workdir"], uid, uid)
        for path in plan["files"]:
            os.lchown(path, uid, uid)
    if plan["namespaces"] != "none":
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_ulong, ctypes.c_void_p]

        def check(rc, what):
            if rc != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"sandbox setup: {what}: {os.strerror(err)}")
        user = _CLONE_NEWUSER if plan["namespaces"] == "user" else 0
        check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | user), "unshare")
        check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
        # The only writable place: the workdir, bound onto the fixed view path before the rest
        # goes read-only (a bind mount copies its source mount's flags).
        check(libc.mount(os.fsencode(plan["workdir"]), os.fsencode(plan["view"]), None,
                         _MS_BIND | _MS_REC, None), "bind the workdir")
        for point, keep in plan["mounts"]:
            # Mounts that refuse (already read-only, locked) stay as they are.
            libc.mount(None, os.fsencode(point), None,
                       _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep, None)
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


def main(argv):
    import marshal
    plan = marshal.loads(bytes.fromhex(os.environ.pop("YOUTU_SANDBOX_PLAN")))
    try:
        isolate(plan)
    except OSError as e:
        print(f"sandbox setup failed: {e}", file=sys.stderr)
        os._exit(126)
    if argv[0] == "--serve":
        serve(plan["uid"] is not None)
        return
    assert argv[0] == "--exec", argv
    try:
        os.execvpe(argv[1], argv[1:], os.environ)
    except OSError as e:
        print(f"sandbox: cannot run {argv[1]}: {e}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
