"""Code that runs INSIDE a sandbox process (stdlib only; see `youtu.agentic.sandbox`).

Two entry points, copied by the host into a read-only boot folder:

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
"""

import os
import sys

# The guard runs in every sandboxed Python (via sitecustomize): keep its imports to os and sys
# (importing json/select/signal here doubled interpreter start-up, 11 -> 23 ms).

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_guard(workdir=None):
    """Refuse AF_INET/AF_INET6/packet sockets and file writes outside `workdir` (default $YOUTU_SANDBOX_WORKDIR)."""
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
    """Read fds until EOF or `deadline`; keep at most `limit` bytes each. -> (chunks, timed_out, dropped)."""
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


def serve():
    """Answer JSON-line requests on stdin until EOF."""
    import json
    workdir = os.path.realpath(os.getcwd())
    install_guard(workdir)
    limit = int(os.environ.get("YOUTU_SANDBOX_MAX_OUTPUT", "65536"))
    for line in sys.stdin:
        try:
            reply = _handle(json.loads(line), workdir, limit)
        except Exception as e:  # reported to the host as the tool's error observation
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__" and "--serve" in sys.argv:
    serve()
