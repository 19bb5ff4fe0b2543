"""What both browser harnesses need of the Chromium processes they start: becoming their subreaper, finding every
one of them (Chromium's crash handler double-forks out of the browser's process group), killing and reaping them,
and the tail of Chromium's log without the noise this machine adds. Python 3.11 standard library only."""
import contextlib, ctypes, os, signal, time


def become_subreaper():
    """Orphaned descendants (Chromium's double-forked helpers) are reparented to us, so we can find and reap them."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def log_tail(path, lines=15):
    """The last lines of Chromium's log, without the complaints about D-Bus (absent here) and Debian's wrapper's
    about findmnt (/etc/chromium.d/dev-shm): that noise would hide the real error."""
    with contextlib.suppress(OSError), open(path, 'rb') as f:
        text = f.read()[-16384:].decode(errors='replace').splitlines()
        return [l for l in text if 'dbus' not in l.lower() and 'unexpected operator' not in l][-lines:]
    return []


def descendants():
    """Our descendants, by /proc."""
    parent = {}
    for name in os.listdir('/proc'):
        with contextlib.suppress(ValueError, OSError), open(f'/proc/{name}/stat') as f:
            parent[int(name)] = int(f.read().rsplit(')', 1)[1].split()[1])
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        found |= frontier
    return found


def kill_all(group=None):
    """SIGKILLs `group` (a process group id), then every descendant, and reaps them until none is left (or 10 s
    passed); returns whether none is left."""
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (left := descendants()) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        time.sleep(0.02)
    return not left
