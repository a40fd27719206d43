"""Email through SMTP (STARTTLS, implicit TLS or plain for a local relay).

Each message is a multipart text + HTML email whose ``Message-ID`` is derived from the idempotency
key, so a receiving system (and the test server) sees a retried message as the same message.
SMTP replies are classified: 4xx and connection failures are retried, 5xx (unknown user, relay
denied, authentication failed) are permanent. ``staff_facing: true`` masks phone numbers in
notifications sent to staff mailboxes.

Each sending thread keeps its SMTP session open for ``keep_alive_seconds`` (default 30) after a
send and reuses it (checked with ``NOOP`` first), instead of a TCP + TLS handshake and a login per
email; a session the server closed meanwhile is replaced. Any error drops the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

from pydantic import Field, SecretStr

from hub.errors import PermanentError, RetriableError
from hub.sdk.connector import Destination, OutboundMessage, Receipt
from hub.sdk.destination import DestinationOptions
from hub.sdk.http import IDEMPOTENCY_HEADER
from hub.sdk.render import buttons_as_links, flatten_markdown

_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


class EmailOptions(DestinationOptions):
    """SMTP server, credentials and sender."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: str = Field(default="starttls", pattern="^(starttls|ssl|none)$")
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    sender_name: str | None = None
    subject_prefix: str = ""
    staff_facing: bool = False
    keep_alive_seconds: float = Field(
        default=30.0, ge=0, le=600, description="reuse an SMTP session idle for less than this; 0: one per email"
    )


def message_id(key: str, domain: str = "cxhub") -> str:
    """The ``Message-ID`` for idempotency key ``key``."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def to_html(message: OutboundMessage) -> str:
    """A small, safe HTML rendering: escaped text, paragraphs, links and buttons."""
    paras = []
    for block in message.body.split("\n\n"):
        text = html.escape(block)
        text = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', text)
        paras.append("<p>" + text.replace("\n", "<br>") + "</p>")
    links = [(b.label, b.url) for b in message.buttons]
    if message.url and all(u != message.url for _, u in links):
        links.append(("查看详情", message.url))
    buttons = " ".join(
        f'<a href="{html.escape(u, quote=True)}" style="padding:8px 14px;background:#1677ff;color:#fff;'
        f'text-decoration:none;border-radius:4px">{html.escape(label)}</a>'
        for label, u in links
    )
    title = f"<h3>{html.escape(message.title)}</h3>" if message.title else ""
    return f"<html><body>{title}{''.join(paras)}<p>{buttons}</p></body></html>"


class EmailMessageDestination(Destination):
    """Email over SMTP: text + HTML, Message-ID from the idempotency key."""

    kind = "email"
    title = "Email over SMTP (STARTTLS / TLS; text + HTML; Message-ID from the idempotency key)"
    Options = EmailOptions
    options: EmailOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._local = threading.local()  # one SMTP session per sending thread (smtplib is not thread-safe)
        self._open: set[smtplib.SMTP] = set()
        self._open_lock = threading.Lock()

    @property
    def staff_facing(self) -> bool:
        """Whether recipients are staff (then phone numbers are masked)."""
        return self.options.staff_facing

    def build(self, message: OutboundMessage) -> EmailMessage:
        """The email for ``message``."""
        mail = EmailMessage()
        mail["Subject"] = f"{self.options.subject_prefix}{message.title or 'cxhub'}"
        mail["From"] = formataddr((self.options.sender_name or "", self.options.sender))
        mail["To"] = ", ".join(message.to)
        mail["Date"] = formatdate(self.context.clock().timestamp(), localtime=False)
        mail["Message-ID"] = message_id(message.key, self.options.sender.rpartition("@")[2] or "cxhub")
        mail[IDEMPOTENCY_HEADER] = message.key
        text = flatten_markdown(message.body)
        links = flatten_markdown(buttons_as_links(message, separator="\n"))
        mail.set_content(text + ("\n\n" + links if links else "") + "\n")
        mail.add_alternative(to_html(message), subtype="html")
        return mail

    def _connect(self) -> smtplib.SMTP:
        o = self.options
        if o.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                o.host, o.port, timeout=o.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(o.host, o.port, timeout=o.timeout)
            if o.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if o.username:
            smtp.login(o.username, o.password.get_secret_value() if o.password else "")
        return smtp

    def _session(self) -> smtplib.SMTP:
        """This thread's open session if it is recent and still answers ``NOOP``, else a new one."""
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            if time.monotonic() - self._local.used_at < self.options.keep_alive_seconds:
                try:
                    if smtp.noop()[0] == 250:
                        return smtp
                except (smtplib.SMTPException, OSError):
                    pass  # the server closed it meanwhile: open another
            self._drop(smtp)
        smtp = self._connect()
        with self._open_lock:
            self._open.add(smtp)
        return smtp

    def _keep(self, smtp: smtplib.SMTP) -> None:
        if self.options.keep_alive_seconds > 0:
            self._local.smtp, self._local.used_at = smtp, time.monotonic()
        else:
            self._drop(smtp)

    def _drop(self, smtp: smtplib.SMTP) -> None:
        with self._open_lock:
            self._open.discard(smtp)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        with contextlib.suppress(OSError):
            smtp.close()

    def close(self) -> None:
        """Close every open SMTP session."""
        with self._open_lock:
            sessions, self._open = list(self._open), set()
        for smtp in sessions:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            with contextlib.suppress(OSError):
                smtp.close()
        self._local = threading.local()

    def send(self, message: OutboundMessage) -> Receipt:
        """Deliver ``message`` to the addresses in ``message.to``."""
        if not message.to:
            raise PermanentError("no recipient: `to` needs email addresses", target=self.name)
        mail = self.build(message)
        try:
            smtp = self._session()
            try:
                refused: dict[str, Any] = smtp.send_message(mail)
            except BaseException:
                self._drop(smtp)
                raise
            self._keep(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {c for c, _ in exc.recipients.values()}
            if all(c >= 500 for c in codes):
                raise PermanentError("every recipient was refused", target=self.name, code=min(codes)) from None
            raise RetriableError("recipients temporarily refused", target=self.name, code=min(codes)) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError("SMTP authentication failed", target=self.name, code=exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:
            err = PermanentError if exc.smtp_code >= 500 else RetriableError
            raise err(f"SMTP server answered {exc.smtp_code}", target=self.name, code=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetriableError(f"cannot reach the SMTP server ({type(exc).__name__})", target=self.name) from None
        detail = f"refused: {len(refused)}" if refused else "250 accepted"
        return Receipt(message_id=mail["Message-ID"], detail=detail)
