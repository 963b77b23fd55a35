"""Alerts in the Windows Event Log (Windows Logs > Application, source `mes-erp-agent`), on Windows only.

Active exactly where pywin32 is (Windows: `for_platform()`); elsewhere there is no such channel, and nothing here
imports pywin32 until a message is sent. An opened incident is an Error event, its resolution an Information
event, both with the message's title and body. The source is registered by `service install` with the generic
"%1" messages of pywin32's win32evtlog.pyd, so Event Viewer shows the text as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from agent.alerts.model import OPENED, Message

SOURCE = "mes-erp-agent"
ERROR, INFORMATION = 0x0001, 0x0004  # EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE
# Message ids in win32evtlog.pyd's table (MSG_ER1, MSG_IR1: the text is the first string): severity | facility | 1.
EVENT_IDS = {ERROR: 0xCFFF0001, INFORMATION: 0x4FFF0001}
MAX_TEXT = 31_000  # an event's strings hold at most 31,839 characters


@dataclass(frozen=True)
class EventLogChannel:
    source: str = SOURCE
    name: str = "eventlog"
    local: bool = True  # written in the caller's thread: a local API call, like the report files

    def describe(self) -> str:
        return f"Windows Event Log (Application, source {self.source})"

    def send(self, message: Message) -> None:
        import win32evtlogutil  # pywin32: present on Windows, where for_platform() returns this channel

        event_type, event_id, strings = event_for(message)
        win32evtlogutil.ReportEvent(self.source, event_id, eventType=event_type, strings=strings)


def event_for(message: Message) -> tuple[int, int, list[str]]:
    """(event type, event id, strings) of the event that tells `message`."""
    event_type = ERROR if message.event == OPENED else INFORMATION
    text = f"{message.title}\n\n{message.body}"
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "\n[cut: the full report is in the alerts folder]"
    return event_type, EVENT_IDS[event_type], [text]


def for_platform(platform: str = sys.platform) -> list[EventLogChannel]:
    """[the Event Log channel] on Windows with pywin32, else []."""
    if platform != "win32" or importlib.util.find_spec("win32evtlogutil") is None:
        return []
    return [EventLogChannel()]
