"""Child processes that never outlive the stage that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent ``parent`` ends, however it ends (a ``kill -9`` gives
    a pool or a launcher no chance to stop its children, which would go on writing): Linux's PR_SET_PDEATHSIG.
    Call it first thing in the child."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
