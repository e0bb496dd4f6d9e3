"""Facts about the machine a result was measured on, stored with every result."""

from __future__ import annotations

import os
import platform


def machine_facts(**extra: object) -> dict[str, str]:
    facts = {
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpus": str(os.cpu_count() or 0),
        "python": platform.python_version(),
    }
    facts.update({key: str(value) for key, value in extra.items()})
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
