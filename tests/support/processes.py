"""Stopping a process a test started: by its PID, gently first."""

from __future__ import annotations

import signal
import subprocess


def stop(process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM,
         grace: float = 10.0) -> None:
    """Send ``how`` unless ``process`` has exited, wait up to ``grace`` seconds, then
    SIGKILL it and reap it."""
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
