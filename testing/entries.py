"""Reset every loaded shell entry point: for in-process runs that meet several stacks.

A shell's ``handler`` (:class:`shared.shell.LambdaEntry`) builds its deps once per process
from ``os.environ``, as a Lambda sandbox does. Tests and scenarios that run several stacks
(or another bus) in one process through a runner that swaps ``os.environ`` reset them
before each run; a runner that binds each function to its own environment
(``handler.bind(environment)``) needs none of this.
"""

from __future__ import annotations

import sys

from shared.shell import LambdaEntry

__all__ = ["reset_lambda_entries"]


def reset_lambda_entries() -> int:
    """Reset the ``handler`` of every loaded ``services.*`` module; how many were reset."""
    reset = 0
    for name, module in list(sys.modules.items()):
        entry = getattr(module, "handler", None)
        if name.startswith("services.") and isinstance(entry, LambdaEntry):
            entry.reset()
            reset += 1
    return reset
