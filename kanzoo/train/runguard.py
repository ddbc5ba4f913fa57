"""One writer per run directory, no orphaned workers, and a heartbeat that names a stalled rank.

- :class:`RunDirLock`: an exclusive ``flock`` on ``<run_dir>/.kanzoo.lock``, taken by the main
  process for the whole run. The file records the holder (pid, host, start time) so a second run
  fails naming it. The kernel drops the lock when its holder dies, so the lock of a killed run is
  taken over without any guessing about stale pids.
- :class:`RunWatch`: a daemon thread per process that (a) exits the process when the launcher that
  started it (``accelerate launch``/``torchrun``) has died, so ``kill -9`` of the launcher does not
  leave workers training as orphans, and (b) under DDP publishes where this rank is in the step
  (data, forward, backward, optimizer, log, eval, checkpoint) through the process group's store, and
  reports ranks that made no progress for ``heartbeat_s`` seconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

LOCK_FILE = ".kanzoo.lock"
#: Order of the phases within an optimizer step (a rank further behind is the one that stalls).
PHASES = ("start", "data", "forward", "backward", "optimizer", "log", "eval", "checkpoint", "done")


class RunDirBusyError(OSError):
    """Another live run holds the run directory's lock."""


class RunDirLock:
    """Exclusive lock of ``run_dir`` (``acquire``/``release``; the directory must exist).

    Args:
        run_dir: The run directory.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirBusyError` naming the holder."""
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunDirBusyError(
                    f"run_dir {self.path.parent} is in use by another training run ({_describe(holder)}); "
                    "wait for it to finish or choose another run_dir"
                ) from None
            # The holder we raced with may have unlinked the file after we opened it: retry on the
            # new file, or two runs would lock two different inodes.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.previous = _read_holder(fd)  # a killed run's record: its lock died with it
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "argv": sys.argv[:8],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        info = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"


def describe_previous(previous: dict[str, Any] | None) -> str | None:
    """A note about a dead run whose lock record was taken over (None when there was none)."""
    if not previous or previous.get("pid") == os.getpid():
        return None
    return f"took over the lock of an earlier run that is no longer running ({_describe(previous)})"


def launched_by_launcher() -> bool:
    """Whether this process was started by ``accelerate launch``/``torchrun`` (its parent)."""
    return any(k in os.environ for k in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "ACCELERATE_MIXED_PRECISION"))


class RunWatch:
    """Launcher watchdog and DDP heartbeat (a daemon thread; ``start``/``stop``).

    Args:
        rank: This process's rank.
        world_size: Number of processes.
        heartbeat_s: Seconds without progress after which a rank is reported (0: no heartbeat).
        report: Called with each report line (the main process prints it).
        watch_parent: Exit when the parent process (the launcher) dies.
        store: A ``torch.distributed`` store shared by the ranks (None: no heartbeat).
    """

    def __init__(
        self,
        *,
        rank: int = 0,
        world_size: int = 1,
        heartbeat_s: float = 0.0,
        report=None,
        watch_parent: bool = False,
        store: Any = None,
    ) -> None:
        self.rank, self.world_size = rank, world_size
        self.heartbeat_s = float(heartbeat_s)
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.store = store if world_size > 1 and heartbeat_s > 0 else None
        self.parent = os.getppid() if watch_parent else None
        self.step, self.phase, self.since = 0, "start", time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: set[tuple[int, int, str]] = set()

    def mark(self, step: int, phase: str) -> None:
        """Record that this rank entered ``phase`` of optimizer step ``step`` (cheap, no I/O)."""
        if phase != self.phase or step != self.step:
            self.step, self.phase, self.since = step, phase, time.time()

    def start(self) -> RunWatch:
        if self.parent is None and self.store is None:
            return self
        self._thread = threading.Thread(target=self._run, name="kanzoo-runwatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        interval = 1.0 if self.store is None else min(1.0, max(0.2, self.heartbeat_s / 4))
        while not self._stop.wait(interval):
            if self.parent is not None and os.getppid() != self.parent:
                self.report(
                    f"error: the launcher of this worker (pid {self.parent}) has died; "
                    f"rank {self.rank} (pid {os.getpid()}) stops"
                )
                os._exit(3)
            if self.store is not None:
                try:
                    self._beat()
                except Exception:  # the store is gone (shutdown, a dead peer): stop beating
                    self.store = None

    def _beat(self) -> None:
        now = time.time()
        record = {
            "step": self.step,
            "phase": self.phase,
            "since": self.since,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "beat": now,
        }
        self.store.set(f"kanzoo_heartbeat/{self.rank}", json.dumps(record))
        if self.rank != 0:
            return
        records = {}
        for r in range(self.world_size):
            try:
                key = f"kanzoo_heartbeat/{r}"
                if r and not self.store.check([key]):
                    continue  # that rank has not beaten yet (get would block until it does)
                records[r] = json.loads(self.store.get(key) if r else json.dumps(record))
            except Exception:
                continue
        for line in stalled_report(records, now=now, heartbeat_s=self.heartbeat_s):
            key = (line[1], line[2], line[3])
            if key not in self._reported:
                self._reported.add(key)
                self.report(line[0])


def stalled_report(
    records: dict[int, dict[str, Any]], *, now: float, heartbeat_s: float
) -> list[tuple[str, int, int, str]]:
    """Report lines for ranks stuck for ``heartbeat_s`` seconds, furthest behind first.

    When every rank has been in its phase for that long, the rank(s) furthest behind (lowest step,
    then earliest phase) are the ones stalling; the others wait for them in a collective.
    Returns ``(line, rank, step, phase)`` tuples.
    """
    if len(records) < 2:
        return []
    stuck = {r: rec for r, rec in records.items() if now - float(rec.get("since", now)) >= heartbeat_s}
    if len(stuck) < len(records) or not stuck:
        return []  # someone is still making progress

    def position(rec):
        phase = rec.get("phase")
        return int(rec.get("step", 0)), PHASES.index(phase) if phase in PHASES else 0

    behind = min(position(rec) for rec in stuck.values())
    lines = []
    for r, rec in sorted(stuck.items()):
        if position(rec) != behind:
            continue
        waiting = sorted(o for o in stuck if position(stuck[o]) != behind)
        lines.append(
            (
                f"warning: rank {r} (pid {rec.get('pid')} on {rec.get('host')}) has been in "
                f"{rec.get('phase')} of step {int(rec.get('step', 0)) + 1} for "
                f"{now - float(rec['since']):.0f} s"
                + (f"; rank(s) {', '.join(map(str, waiting))} wait for it" if waiting else "")
                + " (trainer.dist_timeout_s ends the run)",
                r,
                int(rec.get("step", 0)),
                str(rec.get("phase")),
            )
        )
    return lines
