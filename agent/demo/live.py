"""Step 4: the shop floor changes the MES and the planner the ERP's schedule while the agent polls each flow
exactly as `mes-erp-agent run` does.

The polls are the service's own: `schedule.build_scheduler` makes the same FlowJob per flow (drift gate, then
the run), with the same triggers and job defaults, here as a BackgroundScheduler so that this thread keeps the
clock and the view. Each poll's FlowReport comes back through the scheduler's EVENT_JOB_EXECUTED, each batch
through the job's batch listener. When the shop floor stops, the scheduler keeps polling until every flow has
polled once after the last changes got older than the lag: by then every change is in its target's staging.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import nullcontext
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from rich.live import Live

from agent import pipeline, report, schedule
from agent.config import LoadedConfig
from agent.connect import Systems
from agent.demo.planner import Planner
from agent.demo.polls import PollRecorder
from agent.demo.screen import live_view, planner_line, simulator_line
from agent.demo.shopfloor import ShopFloor

CATCH_UP_MARGIN = 0.25  # seconds past the lag before the last poll, for the MES clock's millisecond rounding
CATCH_UP_TIMEOUT = 60.0  # seconds past a flow's cadence for its last poll; a flow that has not polled by then failed


class DemoFailed(Exception):
    """Something outside the agent went wrong (the simulator, the computer's clock); the message says what."""


class LiveRun:
    """The shop floor (and the ERP planner) for `seconds` with the service's scheduler polling, then the last catch-up."""

    def __init__(self, config: LoadedConfig, systems: Systems, gate: pipeline.Gate | None, recorder: PollRecorder,
                 shopfloor: ShopFloor, seconds: float, planner: Planner | None = None):
        self.config, self.systems, self.gate = config, systems, gate
        self.recorder, self.shopfloor, self.seconds, self.planner = recorder, shopfloor, seconds, planner
        self.printer = recorder.printer
        self.phase = "shop floor running"
        self._polled = threading.Condition()
        self._last_poll_started: dict[str, float] = {}  # per flow: when its latest finished poll started
        self._listener_error: BaseException | None = None

    def run(self) -> None:
        flows = list(self.recorder.flows.values())
        cadence = ", ".join(f"{f.name} every {f.every:g} s" for f in flows)
        planner = ", and a planner reschedules, changes and releases production orders in the ERP," if self.planner else ""
        self.printer.step(4, f"Shop floor, {self.seconds:g} s", "a simulator starts, confirms and completes work "
                          f"orders in the MES{planner} while the agent polls each flow on its own schedule: {cadence}")
        self.shopfloor.prepare()
        if self.planner is not None:
            self.planner.prepare()
        scheduler = schedule.build_scheduler(self.config, self.systems, gate=self.gate,
                                             on_batch=self.recorder.on_batch, scheduler_class=BackgroundScheduler)
        scheduler.add_listener(self._on_poll, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        # The live view goes away at the end: the summary below shows the final numbers.
        view = Live(get_renderable=self._view, console=self.printer.console, refresh_per_second=8, transient=True) \
            if self.printer.tty else nullcontext()
        try:
            with view:
                self.recorder.start_live()
                self.shopfloor.start()
                if self.planner is not None:
                    self.planner.start()
                scheduler.start()
                self._run_shop_floor()
                self.phase = "last catch-up"
                self._catch_up()
                scheduler.shutdown(wait=True)
                self.phase = "done"
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=True)  # a poll in progress ends first (its batch commits or rolls back)
        self._raise_listener_error()
        self.printer.detail(simulator_line(self.shopfloor.counters).plain)
        if self.planner is not None:
            self.printer.detail(planner_line(self.planner.counters).plain)

    def _run_shop_floor(self) -> None:
        end = self.recorder.started + self.seconds
        simulators: list[ShopFloor | Planner] = [self.shopfloor] + ([self.planner] if self.planner else [])
        while (now := time.monotonic()) < end and all(s.is_alive() for s in simulators):
            self._raise_listener_error()
            time.sleep(min(end - now, 0.1))
        for simulator in simulators:
            simulator.stop()
        for simulator in simulators:
            simulator.join()
        if self.shopfloor.error is not None:
            raise DemoFailed(f"the shop floor simulator failed: {self.shopfloor.error}") from self.shopfloor.error
        if self.planner is not None and self.planner.error is not None:
            raise DemoFailed(f"the ERP planner simulator failed: {self.planner.error}") from self.planner.error

    def _catch_up(self) -> None:
        """Keep polling on schedule until every flow has polled once after its last changes got older than the lag."""
        flows = list(self.recorder.flows.values())
        lag = max(f.lag for f in flows)
        last = self.recorder.log.last_commit()
        ready_at = max(time.monotonic(), (last if last is not None else -math.inf) + lag + CATCH_UP_MARGIN)
        if ready_at > time.monotonic() and not self.printer.tty:
            self.printer.console.print(f"  shop floor stopped; the agent polls on its schedule until every flow has "
                                       f"polled once after the last changes' lag ({lag:g} s)")
        deadline = ready_at + max(f.every for f in flows) + CATCH_UP_TIMEOUT
        with self._polled:
            self._polled.wait_for(lambda: self._listener_error is not None or not self._waiting_for(ready_at),
                                  timeout=max(0.0, deadline - time.monotonic()))
            late = self._waiting_for(ready_at)
        self._raise_listener_error()
        for name in late:
            f = self.recorder.flows[name]
            f.outcome = report.FAILED
            f.message = (f"no poll of {name} ended within {f.every + CATCH_UP_TIMEOUT:g} s of its last changes "
                         "getting older than the lag; its last changes may be missing")

    def _waiting_for(self, ready_at: float) -> list[str]:
        """The flows whose latest poll started before `ready_at`."""
        return [name for name in self.recorder.flows if self._last_poll_started.get(name, -math.inf) < ready_at]

    def _on_poll(self, event: JobExecutionEvent) -> None:
        """The scheduler's listener, in the thread that ran the poll: the job id is the flow's name."""
        started = time.monotonic()
        try:
            if event.exception is not None:
                self.recorder.poll_crashed(event.job_id, event.job_id, event.exception)
            else:
                flow_report: report.FlowReport = event.retval
                started = flow_report.started
                self.recorder.finish_poll(flow_report, event.job_id)
        except Exception as exc:  # re-raised in the demo's thread; APScheduler would only log it
            self._listener_error = self._listener_error or exc
        finally:
            with self._polled:
                self._last_poll_started[event.job_id] = started
                self._polled.notify_all()

    def _raise_listener_error(self) -> None:
        if self._listener_error is not None:
            raise self._listener_error

    def _view(self) -> Any:
        return live_view(list(self.recorder.flows.values()), self.shopfloor.counters, self.recorder.events,
                         self.recorder.started, self.seconds, self.phase,
                         self.planner.counters if self.planner is not None else None)
