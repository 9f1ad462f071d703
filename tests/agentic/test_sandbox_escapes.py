"""The escape matrix of issue 17: each attempt a test, every one must fail. They run as the user
running pytest ("host": root here, so the uid drop holds too) and, when that user is root, again
as an unprivileged user ("unprivileged": a forked pytest process that switched to nobody, so the
sandbox runs in an unprivileged user namespace, the case that leaked before).

Each attempt sets up its bait as the host user (a listening socket, a victim process, a private
file, a world-writable folder), runs sandboxed code against it, and returns None when the
sandbox held or a line saying what escaped. The verifiers' reward hacks (code env, HumanEval,
the RL code reward, the LLM-teacher filter) are at the end.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

import pytest

from youtu.agentic import sandbox
from youtu.agentic.sandbox import (Sandbox, SandboxError, SandboxLimits, isolation, run_command,
                                   run_python)

from .sandbox_helpers import processes_with

NOBODY = 65534
ATTEMPTS: dict[str, Callable[[], str | None]] = {}


def attempt(fn: Callable[[], str | None]) -> Callable[[], str | None]:
    ATTEMPTS[fn.__name__] = fn
    return fn


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _py_i(code: str) -> str:
    """A shell word running `code` with `python3 -I`: no sitecustomize, so no audit hook."""
    return f"python3 -I -c {_sh_quote(code)}"


# ---------------------------------------------------------------------------------------------
# the attempts


@attempt
def planted_boot_folder() -> str | None:
    """A folder at the boot path the old code reused, planted by another user (nobody) before
    this process made its first sandbox: its code must never run (it ran as root)."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(Path(sandbox.sandbox_guest.__file__).read_bytes()).hexdigest()[:12]
    planted = Path("/tmp") / f"youtu-sandbox-boot-{os.getuid()}-{digest}"
    marker = Path("/tmp") / f"youtu-planted-{uuid.uuid4().hex}"
    shutil.rmtree(planted, ignore_errors=True)  # a leftover of an older youtu: ours
    planted.mkdir()
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    for name in ("sitecustomize.py", "youtu_sandbox_guest.py"):
        (planted / name).write_text(code)
    if os.geteuid() == 0:
        for p in (planted, *planted.iterdir()):
            os.chown(p, NOBODY, NOBODY)
    sandbox._boot_dir.cache_clear()  # as in a fresh process
    try:
        res = run_python("print('hello')")
        boot = sandbox._boot_dir()
        st = os.stat(boot)
        if marker.exists():
            return "the planted code ran"
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return f"boot folder {boot} is not ours or is writable by others"
        if res.stdout != "hello\n":
            return f"sandbox broken: {res}"
        return None
    finally:
        shutil.rmtree(planted, ignore_errors=True)
        marker.unlink(missing_ok=True)


@attempt
def host_unix_sockets() -> str | None:
    """A world-writable UNIX socket file and an abstract socket of the host, listening."""
    path = os.path.join(tempfile.gettempdir(), f"youtu-esc-{uuid.uuid4().hex[:12]}.sock")
    abstract = f"\0youtu-esc-{uuid.uuid4().hex[:12]}"
    listeners = []
    try:
        for addr in (path, abstract):
            srv = socket.socket(socket.AF_UNIX)
            srv.bind(addr)
            srv.listen()
            srv.setblocking(False)
            listeners.append(srv)
        os.chmod(path, 0o777)
        connect = ("import socket, sys\n"
                   "for a in (%r, %r):\n"
                   "    try:\n"
                   "        s = socket.socket(socket.AF_UNIX); s.connect(a); s.send(b'x')\n"
                   "        print('connected', repr(a))\n"
                   "    except OSError as e:\n"
                   "        print('refused', e)\n") % (path, abstract)
        run_python(connect)
        run_command(_py_i(connect))
        for srv in listeners:
            try:
                srv.accept()
                return "a host UNIX socket accepted a connection from the sandbox"
            except BlockingIOError:
                pass
        return None
    finally:
        for srv in listeners:
            srv.close()
        if os.path.exists(path):
            os.unlink(path)


@attempt
def tcp_to_the_host() -> str | None:
    """TCP to a host listener on loopback and on the host's own address, by Python with the
    audit hook, `python3 -I`, raw ctypes syscalls, and bash's /dev/tcp."""
    srv = socket.create_server(("0.0.0.0", 0))
    srv.setblocking(False)
    port = srv.getsockname()[1]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet: picks the outgoing address
        hosts = ["127.0.0.1", probe.getsockname()[0]]
    except OSError:
        hosts = ["127.0.0.1"]
    finally:
        probe.close()
    try:
        for host in dict.fromkeys(hosts):
            plain = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2)"
            raw = ("import ctypes, socket, struct\nlibc = ctypes.CDLL(None)\n"
                   "fd = libc.socket(2, 1, 0)\n"
                   f"addr = struct.pack('!HH4s8x', 2, {port}, socket.inet_aton({host!r}))\n"
                   "addr = struct.pack('=H', 2) + addr[2:]\n"
                   "print(libc.connect(fd, addr, 16))\n")
            run_python(plain)
            run_command(_py_i(plain) + "; " + _py_i(raw)
                        + f"; bash -c 'echo x > /dev/tcp/{host}/{port}'")
        try:
            srv.accept()
            return "the host's TCP listener accepted a connection from the sandbox"
        except BlockingIOError:
            return None
    finally:
        srv.close()


@attempt
def file_writes_outside() -> str | None:
    """Five ways to write into a world-writable host folder: sh, Python with the audit hook,
    `python3 -I`, ctypes open(2), and a symlink from the workdir."""
    folder = tempfile.mkdtemp(prefix="youtu-esc-")
    os.chmod(folder, 0o1777)
    try:
        t = {k: os.path.join(folder, k) for k in "abcde"}
        run_python(f"open({t['b']!r}, 'w').write('x')")
        run_command(f"echo x > {t['a']}; "
                    + _py_i(f"open({t['c']!r}, 'w').write('x')") + "; "
                    + _py_i(f"import ctypes; ctypes.CDLL(None).open({t['d'].encode()!r}, "
                            "0o101, 0o644)") + "; "
                    + f"ln -s {t['e']} link; echo x > link")
        written = os.listdir(folder)
        return f"wrote {written} into a host folder" if written else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@attempt
def remount_read_write() -> str | None:
    """Remount the read-only root (directly, and from a nested user namespace), then write."""
    target = f"/etc/youtu-esc-{uuid.uuid4().hex[:12]}"
    res = run_command(f"mount -o remount,rw / ; mount -o remount,rw /etc ; echo x > {target} ; "
                      f"unshare -rm sh -c 'mount -o remount,rw /etc; echo x > {target}' ; "
                      f"cat {target}")
    if os.path.exists(target):
        os.unlink(target)
        return "wrote into the host's /etc"
    return "the sandbox's /etc became writable" if res.stdout.strip() == "x" else None


@attempt
def capabilities_in_a_session() -> str | None:
    """Session requests run Python in a fork of the guest, without exec: no capability may be
    left there (a user namespace's creator holds all of them), so no remount from ctypes."""
    code = ("import ctypes\n"
            "caps = dict(l.split(':') for l in open('/proc/self/status') if l.startswith('Cap'))\n"
            "print(int(caps['CapEff'], 16), int(caps['CapPrm'], 16))\n"
            "libc = ctypes.CDLL(None)\n"
            "print(libc.mount(None, b'/', None, 32 | 4096, None),"  # MS_REMOUNT | MS_BIND, rw
            " libc.mount(None, b'/etc', None, 32 | 4096, None))\n")
    with Sandbox(SandboxLimits(timeout_s=5)) as box:
        res = box.run_python(code)
    lines = res.stdout.split("\n")
    if lines[:2] != ["0 0", "-1 -1"]:
        return f"capabilities or a remount left in a session: {res.stdout!r} {res.stderr[-200:]}"
    return None


@attempt
def read_private_files() -> str | None:
    """A 0600 file of the host user, in a folder anyone may traverse."""
    folder = tempfile.mkdtemp(prefix="youtu-esc-")
    os.chmod(folder, 0o755)
    secret = os.path.join(folder, "secret")
    with open(secret, "w") as f:
        f.write("TOPSECRET")
    os.chmod(secret, 0o600)
    try:
        res = run_command(f"cat {secret}; " + _py_i(f"print(open({secret!r}).read())"))
        py = run_python(f"print(open({secret!r}).read())")
        return "read the host user's private file" if "TOPSECRET" in res.stdout + py.stdout \
            else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@attempt
def see_host_processes() -> str | None:
    """The host's processes must be invisible (a PID namespace of its own)."""
    if not isolation()["pid_ns"]:
        return None  # root without a PID namespace: the uid drop stops signals instead
    res = run_command(f"ls /proc/{os.getpid()}/ 2>&1; ls /proc | grep -c '^[0-9]'")
    if "cmdline" in res.stdout:
        return f"sees host pid {os.getpid()}"
    return None if int(res.stdout.split()[-1]) < 10 else f"sees {res.stdout.split()[-1]} pids"


_DAEMON = ("import os, time\n"
           "if os.fork() == 0:\n"
           "    os.setsid()\n"
           "    if os.fork() == 0:\n"
           "        os.execvp('sleep', ['sleep', '{marker}'])\n"  # holds stdout and stderr
           "    os._exit(0)\n"
           "{rest}")


def _daemon_gone(marker: str) -> bool:
    deadline = time.monotonic() + 1.0  # SIGKILL delivery is asynchronous
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not processes_with(marker)


@attempt
def daemon_outlives_the_timeout() -> str | None:
    """A double-forked daemon holding stdout, then a hang: back within timeout + 1 s, the
    daemon dead."""
    marker = f"{uuid.uuid4().int % 10**6}.75"
    res = run_python(_DAEMON.format(marker=marker, rest="time.sleep(60)\n"), timeout_s=1.0)
    if not res.timed_out or res.wall_s > 2.0:
        return f"returned after {res.wall_s:.2f} s (timed_out={res.timed_out})"
    return None if _daemon_gone(f"sleep\0{marker}") else "the daemon outlived the sandbox"


@attempt
def daemon_holds_stdout_after_exit() -> str | None:
    """The command exits at once, its daemon keeps stdout: no wait for the daemon."""
    marker = f"{uuid.uuid4().int % 10**6}.75"
    res = run_python(_DAEMON.format(marker=marker, rest="print('done')\n"), timeout_s=5.0)
    if res.timed_out or res.wall_s > 1.5 or res.stdout != "done\n":
        return f"returned after {res.wall_s:.2f} s: {res}"
    return None if _daemon_gone(f"sleep\0{marker}") else "the daemon outlived the sandbox"


@attempt
def daemon_outlives_the_session() -> str | None:
    """In a session: a request with a daemon on stdout returns, the daemon dies at close()."""
    marker = f"{uuid.uuid4().int % 10**6}.75"
    box = Sandbox(SandboxLimits(timeout_s=5))
    try:
        res = box.run_python(_DAEMON.format(marker=marker, rest="print('done')\n"))
        if res.wall_s > 1.5 or res.stdout != "done\n":
            return f"request returned after {res.wall_s:.2f} s: {res}"
        hang = box.run_python(_DAEMON.format(marker=marker + "1", rest="time.sleep(60)\n"),
                              timeout_s=1.0)
        if not hang.timed_out or hang.wall_s > 2.0:
            return f"timed-out request returned after {hang.wall_s:.2f} s"
        if not _daemon_gone(f"sleep\0{marker}1"):
            return "a timed-out request's daemon outlived it"
    finally:
        box.close()
    return None if _daemon_gone(f"sleep\0{marker}") else "the daemon outlived Sandbox.close()"


@attempt
def signal_host_processes() -> str | None:
    """(Last: on a sandbox that lets it through, kill(-1) ends the run.) SIGKILL a process of
    the host user, by pid from sh and ctypes, and by kill(-1)."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        pid = victim.pid
        run_command(f"kill -9 {pid}; " + _py_i(f"import ctypes; ctypes.CDLL(None).kill({pid}, 9)")
                    + "; kill -9 -1")
        with Sandbox(SandboxLimits(timeout_s=5)) as box:
            box.run(f"kill -9 {pid}; kill -9 -1")
        time.sleep(0.05)
        return "killed a host process" if victim.poll() is not None else None
    finally:
        victim.kill()
        victim.wait()



# ---------------------------------------------------------------------------------------------
# running the matrix: as the pytest user, and as nobody in a forked child


def _as_nobody() -> dict[str, str | None]:
    """Every attempt in a child process that became nobody (fresh sandbox caches, its own
    boot folder): {attempt: None or what escaped}; {'': reason} when none can run. Results
    come back one line each, so a child the sandbox managed to kill still tells which attempt
    did it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)

        def report(name: str, result: str | None) -> None:
            os.write(w, json.dumps([name, result]).encode() + b"\n")

        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            tempfile.tempdir = None
            for fn in (sandbox.isolation, sandbox._python, sandbox._boot_dir,
                       sandbox._stage_dir):
                fn.cache_clear()
            if isolation()["namespaces"] == "none":
                report("", "no unprivileged user namespaces on this host")
            else:
                for name, fn in ATTEMPTS.items():
                    report(name, "the run as nobody was killed during this attempt")
                    try:
                        report(name, fn())
                    except Exception as e:  # an attempt that crashed proves nothing
                        report(name, f"attempt crashed: {type(e).__name__}: {e}")
        except BaseException as e:
            report("", f"could not run as nobody: {e}")
        finally:
            import glob  # the folders this child made (os._exit skips their atexit removal)

            for folder in glob.glob("/tmp/youtu-sandbox-[br]o*-*"):
                if os.stat(folder).st_uid == NOBODY:
                    os.chmod(folder, 0o700)
                    shutil.rmtree(folder, ignore_errors=True)
            os._exit(0)
    os.close(w)
    data, deadline = b"", time.monotonic() + 90  # a sandbox that hangs its host fails, too
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], deadline - time.monotonic())
        chunk = os.read(r, 65536) if ready else b""
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    results: dict[str, str | None] = {}
    for line in data.splitlines():
        name, result = json.loads(line)
        results[name] = result
    for name in ATTEMPTS:
        results.setdefault(name, "the run as nobody died or hung before this attempt")
    return results


@pytest.fixture(scope="module")
def unprivileged_results() -> dict[str, str | None]:
    if os.geteuid() != 0:
        pytest.skip("the unprivileged matrix needs root to switch to nobody (the host matrix "
                    "already runs unprivileged)")
    results = _as_nobody()
    if "" in results:
        pytest.skip(results[""])
    return results


@pytest.mark.parametrize("name", ATTEMPTS)
def test_escape_fails_as_host_user(name):
    if isolation()["namespaces"] == "none":
        pytest.skip("no namespaces: the sandbox refuses untrusted code (see the fail-closed test)")
    assert ATTEMPTS[name]() is None


@pytest.mark.parametrize("name", ATTEMPTS)
def test_escape_fails_as_unprivileged_user(name, unprivileged_results):
    assert unprivileged_results[name] is None


# ---------------------------------------------------------------------------------------------
# fail closed, and the memory bound of a whole sandbox


def test_untrusted_code_is_refused_without_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: {"namespaces": "none", "pid_ns": False,
                                                       "uid_drop": os.geteuid() == 0})
    monkeypatch.delenv(sandbox.ALLOW_UNISOLATED_ENV, raising=False)
    with pytest.raises(SandboxError, match="allow_unisolated = true"):
        run_python("print(1)")
    with pytest.raises(SandboxError, match="allow_unisolated"):
        Sandbox()
    res = run_python("print(1)", limits=SandboxLimits(allow_unisolated=True))
    assert res.stdout == "1\n"


def test_memory_of_the_whole_tree_is_bounded_by_memory_x_processes():
    """Eight forks each holding 48 MiB under memory_mb=128 and max_procs=4: only max_procs
    processes exist at once, so the tree holds at most tree_memory_mb."""
    limits = SandboxLimits(timeout_s=10, memory_mb=128, max_procs=4)
    code = ("import os, time\nheld = 0\nfor _ in range(8):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        x = bytearray(48 * 2**20)\n        time.sleep(1.5)\n"
            "        os._exit(0)\n    held += 1\nprint(held)\n")
    res = run_python(code, limits=limits)
    held = int(res.stdout)
    assert 1 <= held <= limits.max_procs - 1  # the main process is one of them
    assert (held + 1) * limits.memory_mb <= limits.tree_memory_mb == 512


# ---------------------------------------------------------------------------------------------
# reward hacks through every verifier


@pytest.fixture(scope="module")
def code_task():
    from youtu.agentic.envs.code import CodeEnv

    env = CodeEnv(SandboxLimits(timeout_s=3, memory_mb=256))
    return env, env.generate(7, 1)


def _hacks(task) -> dict[str, str]:
    from .envs.test_code import code_hacks

    return code_hacks(task)


def test_rl_code_reward_rejects_the_hacks(code_task, monkeypatch):
    from youtu.agentic import envs

    import importlib

    # the RL rewards are moving from youtu.train to youtu.rl: test wherever they are
    rewards = importlib.import_module("youtu.rl.rewards" if _has_module("youtu.rl.rewards")
                                      else "youtu.train.rewards")
    env, task = code_task
    monkeypatch.setitem(envs.ENVIRONMENTS, "code", env)
    for name, source in _hacks(task).items():
        for weights in ({"code": 1.0}, {"env": 1.0}):
            sample = rewards.RewardInput(task=task, env=env, messages=[], turns=[],
                                         answer=source)
            assert rewards.score(sample, weights)[0] == 0.0, (name, weights)
    good = rewards.RewardInput(task=task, env=env, messages=[], turns=[], answer=task.answer)
    assert rewards.score(good, {"code": 1.0})[0] == 1.0


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_llm_teacher_filter_rejects_the_hacks(code_task):
    """The filter of LLM-teacher episodes is `verify_episode` in the episode's own sandbox
    (reset first); the hacks written there by the "teacher" must not pass it."""
    from youtu.agentic.trajectory import Outcome, Trajectory

    env, task = code_task
    for name, source in _hacks(task).items():
        with env.episode(task) as box:
            traj = Trajectory(id="hack", domain="code", task=task, tools=[], messages=[],
                              phases=[], outcome=Outcome(False, 0.0, "", answer=source))
            assert not env.verify_episode(task, box, traj).correct, name
