"""Runs Kontakt's processes side by side for `kontakt run`, and stops them together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Child:
    """A process to run: a name for messages and the `kontakt` subcommand's arguments."""

    name: str
    args: list[str]


class Supervisor:
    """Starts children, waits until a signal or a child's exit, then stops them all."""

    def __init__(
        self, children: list[Child], env: dict[str, str], say: Callable[[str], None]
    ) -> None:
        self.children = children
        self.env = env
        self.say = say
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def start(self) -> None:
        """Start every child (SIGINT/SIGTERM from now on stop them all)."""
        # Both handlers set explicitly: a shell may start us with SIGINT ignored.
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        for child in self.children:
            self.procs[child.name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *child.args], env=self.env
            )

    def all_running(self) -> bool:
        """True while every child is alive."""
        return all(p.poll() is None for p in self.procs.values())

    def _request_stop(self, *_: object) -> None:
        self._stopping = True

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM or a child exits; stop all; 0 for a clean stop."""
        failed = None
        while not self._stopping:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    failed = name
                    self.say(f"{name} exited with code {proc.returncode}; stopping the rest")
                    self._stopping = True
                    break
            time.sleep(0.2)
        codes = self.stop()
        unclean = {name: code for name, code in codes.items() if code != 0 and name != failed}
        for name, code in unclean.items():
            self.say(f"{name} did not stop cleanly (exit code {code})")
        return 1 if failed or unclean else 0

    def stop(self, grace: float = 20.0) -> dict[str, int]:
        """SIGTERM every child still running, SIGKILL what outlives the grace period.

        Returns each child's exit code (0: it finished its work and stopped cleanly).
        """
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop in {grace:.0f}s; killing it")
                proc.kill()
                proc.wait()
        return {name: proc.returncode for name, proc in self.procs.items()}
