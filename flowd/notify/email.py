"""Send one job-end e-mail through the configured SMTP server (``[smtp]``), with :mod:`smtplib`.

One message goes to all of a job's ``notification_emails`` at once. SMTP's own answer decides what
happens next: a 4xx or a lost connection may pass (retry), a 5xx refusal will not (give up).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from flowd.config.sections import SmtpConfig
from flowd.notify.messages import DeliveryResult, OutboxMessage, Outcome

__all__ = ["SMTP_TIMEOUT_S", "compose", "send_email"]

SMTP_TIMEOUT_S = 30.0
"""How long one SMTP conversation step may take; a stuck server must not hold the dispatcher."""

NO_SMTP = "no SMTP server is configured ([smtp] host is empty)"


def compose(message: OutboxMessage, sender: str) -> EmailMessage:
    """The e-mail of a job end: the subject names the job and its status, the body its paths."""
    body = message.payload
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(message.recipients)
    mail["Subject"] = f"flowd job {body['job_id']}: {body['status']}"
    lines = [f"Job: {body['job_id']}", f"Status: {body['status']}"]
    if "msg" in body:
        lines.append(f"Error: {body['msg']}")
    lines += [
        f"Output folder: {body['output']}",
        f"Input folder: {body['input_dir']}",
        f"Binary: {body['binary_path']}",
    ]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def send_email(message: OutboxMessage, smtp: SmtpConfig, password: str | None) -> DeliveryResult:
    """Send ``message`` once; never raises for a failed delivery.

    NOT_SENT when ``smtp.host`` is empty; STARTTLS (verified against the system's CAs) when
    ``smtp.starttls``; login when ``smtp.username`` is set.
    """
    if not smtp.enabled:
        return DeliveryResult(Outcome.NOT_SENT, NO_SMTP)
    mail = compose(message, smtp.sender)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT_S) as server:
            if smtp.starttls:
                server.starttls(context=ssl.create_default_context())
            if smtp.username:
                server.login(smtp.username, password or "")
            server.send_message(mail, from_addr=smtp.sender, to_addrs=list(message.recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        return DeliveryResult(Outcome.GIVE_UP, f"every recipient refused: {exc.recipients}")
    except smtplib.SMTPResponseException as exc:
        outcome = Outcome.GIVE_UP if 500 <= exc.smtp_code < 600 else Outcome.RETRY
        text = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return DeliveryResult(outcome, f"SMTP {exc.smtp_code}: {text}")
    except (OSError, smtplib.SMTPException) as exc:  # connection refused, timeout, TLS, dropped
        return DeliveryResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
    return DeliveryResult(Outcome.ACKNOWLEDGED)
