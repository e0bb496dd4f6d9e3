"""Interrupting a real ``tickless`` process once it is under way (shared by the tests of
Ctrl-C and SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading


def interrupt_once_under_way(
    args: list[str], signum: int = signal.SIGTERM, timeout_s: float = 120
) -> tuple[int, str]:
    """Start ``tickless ARGS``, wait for its first progress line on stderr (something has
    been measured), send ``signum``; returns its exit status and its whole stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickless", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(timeout_s, proc.kill)  # a hung run fails, it does not hang
    killer.start()
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.rstrip().endswith(" %"):
                proc.send_signal(signum)
                break
        seen.append(proc.stderr.read())
        return proc.wait(), "".join(seen)
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()
