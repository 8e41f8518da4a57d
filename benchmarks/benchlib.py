"""Timing helpers shared by the benchmark scripts (sqlite_export.py,
writer_and_gzip.py, compare.py): one way to run a command under GNU time,
take the median, warm the page cache, see whether the rest of the machine
disturbed a run, and describe the machine and the commit a build came from.

Peak RSS comes from GNU time (`/usr/bin/time`, Debian package `time`): a
child forked from this Python process would inherit Python's high-water mark
in its own ru_maxrss. For a shell command (a pipeline, a redirection) time
wraps the whole shell, and %M is the largest of its children's peaks.
"""
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

TIME_BIN = "/usr/bin/time"


class CommandFailed(RuntimeError):
    """A timed command exited with a non-zero status."""


def busy_seconds():
    """CPU time the whole machine has spent busy so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timed:
    """One run: wall seconds, CPU seconds (user + sys), peak RSS in bytes of
    the largest process, and the CPU seconds the rest of the machine used
    meanwhile (well above 0: the run was disturbed)."""
    wall: float
    cpu: float
    rss: int
    others: float
    out: bytes = field(default=b"", repr=False)
    err: bytes = field(default=b"", repr=False)


def run_timed(cmd, stdin=None, stdout=subprocess.DEVNULL, check=True):
    """Runs cmd under GNU time and returns a Timed.

    cmd is an argv list, or a string run by `sh -c` (pipelines,
    redirections). stdout goes where given; subprocess.PIPE captures it
    (into .out; small outputs only). A failure raises CommandFailed when
    check is true. The command runs in its own process group, which is
    killed if this process is interrupted while it runs."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    fd, time_file = tempfile.mkstemp(prefix="exportengine-time-")
    os.close(fd)
    try:
        busy0 = busy_seconds()
        t0 = time.perf_counter()
        p = subprocess.Popen([TIME_BIN, "-f", "%M %U %S", "-o", time_file, *argv], stdin=stdin,
                             stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
        try:
            # communicate() reads both pipes: a child never blocks on a full one.
            out, err = p.communicate()
        except BaseException:
            kill_group(p)
            raise
        wall = time.perf_counter() - t0
        busy = busy_seconds() - busy0
        with open(time_file) as f:
            # On failure GNU time writes "Command exited with non-zero
            # status N" first; the format line is always last.
            maxrss_kib, user, system = f.read().split()[-3:]
    finally:
        os.remove(time_file)
    if check and p.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise CommandFailed(f"command failed ({p.returncode}): {shown}\n"
                            f"{(err or b'').decode(errors='replace')[-2000:]}")
    cpu = float(user) + float(system)
    return Timed(wall, cpu, int(maxrss_kib) * 1024, max(0.0, busy - cpu), out or b"", err or b"")


def kill_group(p):
    """Kills a Popen started with start_new_session=True and all it started."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def median_by_wall(results):
    """The median run by wall time (the upper one of an even count)."""
    return sorted(results, key=lambda r: r.wall)[len(results) // 2]


def median_run(runs, cmd, **kwargs):
    """Runs cmd `runs` times; returns (the median run by wall time, every run)."""
    results = [run_timed(cmd, **kwargs) for _ in range(runs)]
    return median_by_wall(results), results


def median(values):
    return statistics.median(values) if values else float("nan")


def warm(*paths):
    """Reads files (and the files under directories) once, so the page
    cache holds them before a warm-cache measurement."""
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                warm(*(os.path.join(root, f) for f in files))
            continue
        try:
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass
        except (FileNotFoundError, PermissionError):
            pass


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine():
    """One line: host, cores, CPU model, memory, kernel."""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.node()}: {os.cpu_count()} cores, {cpu_model()}, {mem_gib:.0f} GiB, "
            f"{platform.system()} {platform.release()}")


def git_revision(path, width=90):
    """`<short hash> <subject>` of the HEAD of the git tree holding `path` (a
    file or directory), marked when the tree has uncommitted changes; None
    outside a git tree."""
    d = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        head = subprocess.run(["git", "-C", d, "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", d, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head[:width] + (" (with uncommitted changes)" if dirty else "")
