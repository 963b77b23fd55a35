"""Where alerts go: report files (`dir`), a webhook (Teams, Slack), e-mail (SMTP), and Apprise URLs.

Each channel sends one `Message` or raises; retrying and rate limiting live in delivery.py. A channel's
`name` is its key in the outbox (stable across restarts, and free of secrets); `describe()` is what the
log shows. No channel logs or raises a password or a secret URL: the e-mail password is read from its
file only when sending, and webhook and Apprise URLs (which carry tokens) are shown by host or scheme.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from agent.alerts.model import OPENED, Message

_RED, _GREEN = "C4314B", "2EB886"  # Teams card accent: an incident opened, resolved


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def local(self) -> bool: ...  # written in the caller's thread (a file), not by a courier

    def describe(self) -> str: ...

    def send(self, message: Message) -> None: ...


@dataclass(frozen=True)
class DirChannel:
    """One report pair per incident and per resolution: `<stem>.txt` for people, `<stem>.json` for machines."""

    folder: Path
    name: str = "dir"
    local: bool = True

    def describe(self) -> str:
        return f"dir ({self.folder})"

    def send(self, message: Message) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{message.stem}.json").write_text(
            json.dumps(message.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n")
        (self.folder / f"{message.stem}.txt").write_text(message.body + "\n", encoding="utf-8", newline="\n")


@dataclass(frozen=True)
class WebhookChannel:
    """A JSON POST that Slack and Teams incoming webhooks both accept: Slack reads `text`; Teams reads the
    MessageCard fields (title, text, facts) and ignores nothing it needs."""

    url: str
    timeout: float = 10.0
    name: str = "webhook"
    local: bool = False

    def describe(self) -> str:
        return f"webhook ({urlsplit(self.url).hostname})"  # the path of a Slack or Teams URL is its secret

    def send(self, message: Message) -> None:
        request = urllib.request.Request(
            self.url, data=json.dumps(webhook_body(message)).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "mes-erp-agent"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise ConnectionError(f"the webhook answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(f"cannot reach the webhook host: {exc.reason}") from None


def webhook_body(message: Message) -> dict[str, Any]:
    facts = [{"name": name, "value": value} for name, value in message.incident.fields()]
    return {
        "text": f"{message.title}\n```\n{message.body}\n```",
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.title,
        "title": message.title,
        "themeColor": _RED if message.event == OPENED else _GREEN,
        "sections": [{"facts": facts, "text": f"<pre>{_html(message.body)}</pre>"}],
    }


@dataclass(frozen=True)
class EmailChannel:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = True
    username: str | None = None
    password_file: Path | None = None
    timeout: float = 30.0
    name: str = "email"
    local: bool = False

    def describe(self) -> str:
        return f"email (SMTP {self.host}:{self.port})"

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.title
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail["Date"] = email.utils.format_datetime(message.at)
        mail["Message-ID"] = email.utils.make_msgid(f"{message.event}.{message.serial}", domain="mes-erp-agent")
        mail.set_content(message.body + "\n")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self._password())
            smtp.send_message(mail)

    def _password(self) -> str:
        if self.password_file is None:
            raise ValueError("`alerts.email.username` is set but `alerts.email.password_file` is not")
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise OSError(f"cannot read the SMTP password file {self.password_file} ({exc.strerror})") from None


@dataclass(frozen=True)
class AppriseChannel:
    """Any service Apprise knows (one URL each: msteams://, slack://, mailtos://, ntfy://, ...)."""

    url: str
    local: bool = False

    @property
    def name(self) -> str:  # stable for the same URL, and shows no token
        return f"apprise-{urlsplit(self.url).scheme}-{hashlib.sha256(self.url.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        return f"apprise ({urlsplit(self.url).scheme}://…)"

    def send(self, message: Message) -> None:
        import apprise  # imported when first used: most plants configure no Apprise URL

        notifier = apprise.Apprise()
        if not notifier.add(self.url):
            raise ValueError("Apprise does not understand this URL; see the Apprise documentation for its form")
        kind = apprise.NotifyType.FAILURE if message.event == OPENED else apprise.NotifyType.SUCCESS
        if not notifier.notify(body=message.body, title=message.title, notify_type=kind):
            raise ConnectionError("Apprise could not deliver the message (its log says why)")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
