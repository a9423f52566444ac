"""core.runtime: freed-memory reuse (checked by counting page faults) and the thread context."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.runtime import intra_op_threads, keep_freed_memory

REPO = Path(__file__).resolve().parents[1]

# Allocates a 64 MiB tensor, touches and frees it, ten times: the last round's minor page faults
# say whether the freed memory was reused or handed back to the OS and faulted in again. (With
# mmap off, glibc's bins settle after a few rounds: the first 2-4 may still grow the heap.)
_FAULTS = """
import json, resource, sys, torch
sys.path.insert(0, {repo!r})
from core.runtime import keep_freed_memory
kept = keep_freed_memory() if {keep} else False
def round_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 2**20, dtype=torch.float32)
    t.fill_(1.0)
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [round_faults() for _ in range(10)]
print(json.dumps({{"kept": kept, "faults": faults[-1]}}))
"""


def _faults(keep: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS.format(repo=str(REPO), keep=keep)],
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_page_faulting_reallocations():
    default, kept = _faults(False), _faults(True)
    assert kept["kept"] is True
    pages = 64 * 2**20 // 4096
    assert default["faults"] > pages // 2  # glibc unmapped the block: every page faults again
    assert kept["faults"] < pages // 20  # reused: (almost) no page is faulted in again


def test_keep_freed_memory_is_idempotent():
    first = keep_freed_memory()
    assert keep_freed_memory() is first
    assert isinstance(first, bool)


def test_intra_op_threads_sets_and_restores():
    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with intra_op_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with intra_op_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
