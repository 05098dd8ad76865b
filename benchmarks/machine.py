"""Machine description printed at the top of every benchmark result."""
from __future__ import annotations

import os
import platform

import torch


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"CPU: {cpu} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}); GPU: {gpu}; "
            f"torch {torch.__version__}; Python {platform.python_version()}")
