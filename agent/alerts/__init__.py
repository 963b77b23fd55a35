"""Alerts to people (issue 8): every incident told once when it opens and once when it resolves.

model.py      Incident, Resolution, Message: the values
incidents.py  IncidentBook: opens and resolves incidents, keeps the outbox in `<alerts.dir>/incidents.state.json`
delivery.py   one courier thread per remote channel: rate limit, retry with backoff, logged once per failure streak
channels.py   dir (report files), webhook (Teams, Slack), email (SMTP), apprise (further services)
eventlog.py   the Windows Event Log, on Windows only

One book per agent process: the scheduler and the drift gate share it (`DriftGate(..., book=...)`).
"""

from __future__ import annotations

from agent.alerts import eventlog
from agent.alerts.channels import AppriseChannel, Channel, DirChannel, EmailChannel, WebhookChannel
from agent.alerts.delivery import DeliveryPolicy
from agent.alerts.incidents import IncidentBook
from agent.alerts.model import OPENED, RESOLVED, Incident, Message, Resolution
from agent.config import AlertsConfig, LoadedConfig


def book_for(config: LoadedConfig) -> IncidentBook:
    """The IncidentBook of this configuration, with every channel under `alerts:`."""
    alerts = config.model.alerts
    folder = config.resolve(alerts.dir)
    return IncidentBook(folder, channels_for(config), policy_for(alerts))


def channels_for(config: LoadedConfig) -> list[Channel]:
    alerts = config.model.alerts
    channels: list[Channel] = [DirChannel(config.resolve(alerts.dir))]
    if alerts.webhook is not None:
        channels.append(WebhookChannel(alerts.webhook.url, alerts.webhook.timeout.total_seconds()))
    if alerts.email is not None:
        mail = alerts.email
        channels.append(EmailChannel(
            mail.host, mail.port, mail.sender, tuple(mail.to), mail.starttls, mail.username,
            config.resolve(mail.password_file) if mail.password_file else None, mail.timeout.total_seconds(),
        ))
    channels += [AppriseChannel(url) for url in alerts.apprise]
    channels += eventlog.for_platform()  # Windows only
    return channels


def policy_for(alerts: AlertsConfig) -> DeliveryPolicy:
    return DeliveryPolicy(
        messages=alerts.rate_limit.messages,
        per=alerts.rate_limit.per.total_seconds(),
        first_wait=alerts.retry.first_wait.total_seconds(),
        max_wait=alerts.retry.max_wait.total_seconds(),
        exit_wait=alerts.exit_wait.total_seconds(),
    )


__all__ = [
    "OPENED", "RESOLVED", "AppriseChannel", "Channel", "DeliveryPolicy", "DirChannel", "EmailChannel", "Incident",
    "IncidentBook", "Message", "Resolution", "WebhookChannel", "book_for", "channels_for", "policy_for",
]
