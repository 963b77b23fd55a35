"""Exit codes: a contract that plants' scripts rely on. Every command and the scheduler use these."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success; quarantined rows are not a failure
    FLOW_FAILED = 1  # a flow failed (database unreachable, a batch rejected, ...); the next run retries
    CONFIG = 2  # configuration error, including a table or column that does not exist (nothing was moved)
    DRIFT = 3  # a flow halted on schema drift
    PRIVILEGES = 4  # `run --strict-privileges`: a login can do more than its grants; nothing was started
    HELD_ELSEWHERE = 5  # `run --once`: another agent holds a flow's lock (it moves that flow); that flow was not run
    INTERRUPTED = 130  # Ctrl+C (the demo), or `run --once` stopped by SIGTERM/SIGINT after a committed batch
