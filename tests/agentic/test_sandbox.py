"""Sandbox limits: each test proves one layer holds (CPU, wall clock, processes, memory, file
size, filesystem, network, environment) and that the session runs many steps in one process."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid

import pytest

from youtu.agentic.sandbox import Sandbox, SandboxLimits, isolation, run_command, run_python

from .sandbox_helpers import processes_with

needs_namespaces = pytest.mark.skipif(isolation()["namespaces"] == "none",
                                      reason="host gives no network/mount namespaces")


def _wait_for_processes_with(marker: str, timeout_s: float = 5.0) -> list[int]:
    """`processes_with`, polled: a child started in the background may not have exec'd yet."""
    deadline = time.monotonic() + timeout_s
    while not (found := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_runs_code_in_a_private_workdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where private workdirs are made
    code = "import os; print(sum(range(10))); print(os.getcwd()); print(open('data.txt').read())"
    first = run_python(code, files={"data.txt": "hi"})
    second = run_python(code, files={"data.txt": "hi"})
    assert first.ok, first.stderr
    assert first.stdout.split() == second.stdout.split()  # same view of the workdir each run
    total, cwd, data = first.stdout.split()
    assert (total, data) == ("45", "hi")
    assert list(tmp_path.iterdir()) == []  # deleted afterwards


def test_infinite_loop_is_stopped_by_the_cpu_limit():
    res = run_python("while True: pass", limits=SandboxLimits(timeout_s=20, cpu_s=1))
    assert not res.timed_out
    assert res.signal in ("SIGXCPU", "SIGKILL")
    assert res.wall_s < 10


def test_cpu_limit_is_per_process_and_defaults_to_the_timeout_plus_2():
    code = ("import resource, subprocess, sys\n"
            "show = 'import resource; print(*resource.getrlimit(resource.RLIMIT_CPU))'\n"
            "exec(show)\n"
            "print(subprocess.run([sys.executable, '-c', show], capture_output=True, "
            "text=True).stdout, end='')\n")
    res = run_python(code, limits=SandboxLimits(timeout_s=3.5))
    assert res.ok, res.stderr
    assert res.stdout.splitlines() == ["5 6", "5 6"]  # this process and its child, each


def test_wall_clock_timeout_kills_the_process_group():
    marker = f"{uuid.uuid4().int % 10**6}.25"  # unique sleep argument to find leftovers
    code = (f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\n"
            f"subprocess.Popen(['setsid', 'sleep', '{marker}'])\ntime.sleep(60)")
    res = run_python(code, timeout_s=1.0)
    assert res.timed_out and res.wall_s < 5
    assert processes_with(f"sleep\x00{marker}") == []


def test_fork_bomb_is_contained():
    limits = SandboxLimits(timeout_s=1.5, max_procs=12)
    code = ("import os, time\nok = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        os.close(1)\n"
            "        time.sleep(5)\n"
            "        os._exit(0)\n    ok += 1\nprint(ok)")
    res = run_python(code, limits=limits)
    assert int(res.stdout) < 12  # the 12th process could not be created
    marker = f"bomb{uuid.uuid4().hex[:8]}"
    res = run_command(f"{marker}() {{ {marker} | {marker} & }}; {marker}", limits=limits)
    assert res.wall_s < 8
    assert processes_with(marker) == []


def test_huge_allocation_fails():
    res = run_python("x = bytearray(4 * 2**30)\nprint('allocated')", memory_mb=256)
    assert res.returncode != 0 and "MemoryError" in res.stderr
    assert "allocated" not in res.stdout


def test_file_size_is_limited(tmp_path):
    code = "open('big.bin', 'wb').write(b'x' * (8 * 2**20))"
    res = run_python(code, workdir=tmp_path, limits=SandboxLimits(file_mb=1))
    assert res.returncode != 0
    assert (tmp_path / "big.bin").stat().st_size <= 2**20


def test_writing_outside_the_workdir_fails(tmp_path):
    target = tmp_path / "outside.txt"
    res = run_python(f"open({str(target)!r}, 'w').write('escaped')\n")
    assert res.returncode != 0 and "outside the working directory" in res.stderr
    assert not target.exists()


@needs_namespaces
def test_writing_outside_the_workdir_fails_at_the_os_level():
    # World-writable folders on the host, so neither the dropped uid nor file modes are what
    # stops it, and `python -I` skips the audit hook (no sitecustomize): the sandbox's own
    # read-only root (where /tmp is an empty read-only folder and /dev/shm does not exist)
    # must hold alone.
    targets = [f"/tmp/youtu-escape-{uuid.uuid4().hex}", f"/dev/shm/youtu-escape-{uuid.uuid4().hex}"]
    script = "".join(f"echo escaped > {t}; python3 -I -c \"open('{t}', 'w')\"; " for t in targets)
    res = run_command(script + "echo inside > inside.txt && cat inside.txt")
    assert res.stdout.strip() == "inside"
    assert res.stderr.count("Read-only file system") == 2  # /tmp, by sh and by python
    assert res.stderr.count("No such file or directory") + res.stderr.count(
        "Directory nonexistent") == 2  # /dev/shm
    assert not any(os.path.exists(t) for t in targets)


def test_opening_a_socket_fails():
    res = run_python("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)")
    assert res.returncode != 0 and "network access is disabled" in res.stderr


@needs_namespaces
def test_no_network_even_without_the_audit_hook():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        res = run_command(["python3", "-I", "-c", "import socket; "
                           f"socket.create_connection(('127.0.0.1', {port}), timeout=2)"])
        assert res.returncode != 0 and "unreachable" in res.stderr.lower()
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected
            server.accept()
    finally:
        server.close()


def test_environment_is_clean(monkeypatch):
    monkeypatch.setenv("YOUTU_TEST_SECRET", "hunter2")
    res = run_command("env")
    assert "hunter2" not in res.stdout
    env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert env["HOME"] == env["TMPDIR"] == env["YOUTU_SANDBOX_WORKDIR"]


def test_session_runs_many_steps_in_one_process():
    with Sandbox(SandboxLimits(timeout_s=5), files={"pkg/mod.py": "X = 1\n"}) as box:
        assert box.run("cat pkg/mod.py").stdout == "X = 1\n"
        box.write_file("pkg/mod.py", "X = 2\n")
        assert box.run_python("from pkg import mod; print(mod.X)").stdout == "2\n"
        slow = box.run("sleep 30", timeout_s=0.5)
        assert slow.timed_out and slow.signal == "SIGKILL"
        assert box.run("echo still alive").stdout == "still alive\n"  # survives the timeout
        assert box.run_python("import sys; sys.exit(3)").returncode == 3
        box.run("ln -s /etc/passwd leak")
        with pytest.raises(OSError, match="outside"):
            box.read_file("leak")
        with pytest.raises(OSError, match="outside"):
            box.read_file("../../etc/passwd")
        workdir = box.workdir
    assert not os.path.exists(workdir)


@pytest.mark.skipif(not isolation()["uid_drop"], reason="reset needs a root host (own uid)")
def test_reset_is_as_clean_as_a_new_sandbox():
    marker = f"{uuid.uuid4().int % 10**6}.5"
    with Sandbox(SandboxLimits(timeout_s=5), files={"a.txt": "old"}) as box:
        box.run(f"mkdir -p d && touch d/x && (setsid sleep {marker} > /dev/null 2>&1 &)")
        assert _wait_for_processes_with(f"sleep\x00{marker}")
        # guest code cannot reach into the server: it is not ptrace-able (PR_SET_DUMPABLE 0)
        assert "Permission denied" in box.run("cat /proc/$PPID/environ").stderr
        box.reset({"b.txt": "new"})
        assert processes_with(f"sleep\x00{marker}") == []
        assert box.run("ls -A").stdout.split() == ["b.txt"]
        assert box.run_python("print(open('b.txt').read())").stdout == "new\n"
