"""Page faults of CPU training steps with glibc's default allocator and with tunelab.nlp.allocator.

PyTorch frees and re-allocates the same activation-sized tensors every step; glibc serves
those above its mmap threshold with fresh pages, so each step pays their page faults again.
``allocator.keep_freed_memory()`` keeps freed memory for reuse. This counts the minor page
faults of 12 training steps of a small MLP (batch shapes varying as with dynamic padding),
each setting in a fresh interpreter, over a few rounds, and prints the medians and their ratio.

The count depends on what else the machine runs (other processes' memory pressure), so it is
a benchmark, not a test: tests/unit/nlp/test_nlp_fastpath.py checks only that the settings
are asked for, and in which trials.

Usage::

    python benchmarks/allocator.py            # 3 rounds, about 30 s
    python benchmarks/allocator.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "on":
    from tunelab.nlp import allocator
    assert allocator.keep_freed_memory(), "mallopt refused the settings"
torch.manual_seed(0); torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(),
                                                torch.nn.Linear(1024, 256)) for _ in range(4)])
def step(rows):  # batch shapes vary from step to step, as with dynamic padding
    net(torch.randn(rows, 256)).square().mean().backward()
for rows in (2048, 1536, 1024):  # warm-up: the first steps fault in the working set either way
    step(rows)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    for rows in (2048, 1536, 1024, 1792):
        step(rows)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, setting], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("glibc's mallopt is Linux only")
    default, kept = [], []
    for _ in range(args.rounds):
        default.append(faults("off"))
        kept.append(faults("on"))
    d, k = statistics.median(default), statistics.median(kept)
    print(f"minor page faults in 12 steps (median of {args.rounds} rounds): "
          f"glibc defaults {d:.0f} {default}, keep_freed_memory {k:.0f} {kept}, ratio {d / max(k, 1):.1f}x")


if __name__ == "__main__":
    main()
