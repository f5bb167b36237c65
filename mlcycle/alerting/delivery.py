"""Delivering a rendered notification to its channel, with retries, and never leaking a secret.

HTTP goes through the standard library (Lambda's Python runtime has no ``requests``). A delivery is
retried up to ``alerts.max_attempts`` times with exponential backoff and jitter, or as long as the
receiver asks with ``Retry-After`` (Slack's rate limit); an answer that says the request itself is wrong
(a 4xx other than 408 and 429) is not retried, since sending it again cannot help. Whatever happens,
:meth:`Deliverer.deliver` answers a :class:`DeliveryResult` instead of raising: the router keeps failed
deliveries in the alert state and must go on with the other channels.

A webhook URL is a credential (whoever knows it can post to the channel), as is a routing key: both are
read from Secrets Manager at run time, and every log line and error passes through a redactor that
knows them, so neither reaches CloudWatch Logs or the alert state.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import math
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import BotoCoreError, ClientError

from mlcycle.alert_settings import AlertChannel, AlertChannels
from mlcycle.alerting import channels
from mlcycle.alerting.model import DeliveryResult, Notification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
#: Seconds the cached secret values live (Powertools' cache), so a rotated URL is picked up.
SECRET_MAX_AGE = 300
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 300.0
#: How much of a refusing answer's body the result keeps.
ERROR_BODY_CHARS = 500
REDACTED = "[redacted]"
_RNG = random.Random()
_SNS_TRANSIENT = {"Throttling", "ThrottlingException", "ThrottledException", "InternalError", "KMSThrottling"}


def read_secret(name: str) -> str:
    """The default reader: Powertools' cached Secrets Manager lookup (one call per 5 minutes a secret)."""
    value = parameters.get_secret(name, max_age=SECRET_MAX_AGE)
    return value.decode() if isinstance(value, bytes) else str(value)


class SecretUnavailableError(Exception):
    """A channel's secret cannot be read or does not hold what the channel needs (never its value)."""


@dataclass(frozen=True)
class Target:
    """Where a channel's requests go, read from its secret, and the strings to keep out of any text."""

    url: str
    routing_key: str | None
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """One attempt's outcome: success, or why not and whether another attempt may help."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = False
    #: Seconds the receiver asked us to wait (``Retry-After``).
    retry_after: float | None = None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    status: int | None
    error: str | None


class Redactor:
    """Replaces every known secret string (and the secret parts of a URL) in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            value = secret.strip()
            if len(value) >= 4:
                self._secrets.add(value)
            if channels.is_web_url(value):
                self._secrets.update(_url_secrets(value))

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):  # a URL before its path
            text = text.replace(secret, REDACTED)
        return text


def _url_secrets(url: str) -> set[str]:
    """The parts of a webhook URL that are its credential, should a receiver echo only a part: its
    path and query, and every long segment of them (a Slack ``/services/T../B../<token>``'s token)."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    pieces = {tail, tail.lstrip("/")} if len(tail) > 1 else set()
    pieces |= {p for p in re.split(r"[/?&=]", tail) if len(p) >= 12}
    return pieces


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Deliverer:
    """Delivers notifications to the channels of ``alerts`` (SNS through ``sns`` and ``topic_arn``)."""

    def __init__(
        self,
        alerts: AlertChannels,
        *,
        sns: SNSClient | None,
        topic_arn: str | None,
        secrets: Callable[[str], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10.0,
    ) -> None:
        self.alerts = alerts
        self._sns = sns
        self._topic_arn = topic_arn
        self._secrets = secrets or read_secret
        self._sleep = sleep
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())
        #: Every secret value read so far: a receiver may echo another channel's secret too.
        self._redact = Redactor()

    def deliver(self, channel: AlertChannel, notification: Notification) -> DeliveryResult:
        """Send ``notification`` to ``channel``; a failure is the answer, never an exception."""
        redact = self._redact
        try:
            if channel.kind == "sns":
                outcome = self._publish(channel, notification)
            else:
                target = self._target(channel)
                redact.add(*target.secrets)
                outcome = self._post_all(channel, target, notification, redact)
        except SecretUnavailableError as exc:
            outcome = Outcome(ok=False, attempts=0, status=None, error=str(exc))
        except Exception as exc:  # a bug must not stop the other channels; its text may hold a secret
            outcome = Outcome(False, 0, None, redact(f"{type(exc).__name__}: {exc}")[:ERROR_BODY_CHARS])
        self._log(channel, outcome)
        return DeliveryResult(channel.name, outcome.ok, outcome.attempts, outcome.status, outcome.error)

    # HTTP channels ------------------------------------------------------------------------------------

    def _post_all(
        self, channel: AlertChannel, target: Target, notification: Notification, redact: Redactor
    ) -> Outcome:
        """POST each document the channel's kind renders (one, or one event per alert for PagerDuty)."""
        outcomes = []
        for label, document in self._documents(channel, target, notification):
            data = json.dumps(document, default=str).encode()
            outcome = self._attempt(channel, functools.partial(self._post, target.url, data), redact)
            outcomes.append((label, outcome))
        failed = [(label, o) for label, o in outcomes if not o.ok]
        last = (failed or outcomes)[-1][1] if outcomes else None
        return Outcome(
            ok=not failed,
            attempts=sum(o.attempts for _, o in outcomes),
            status=last.status if last else None,
            error="; ".join(f"{label}{o.error}" for label, o in failed) or None,
        )

    def _documents(
        self, channel: AlertChannel, target: Target, notification: Notification
    ) -> list[tuple[str, dict[str, Any]]]:
        runbook = self.alerts.runbook_url
        if channel.kind == "pagerduty":
            events = channels.pagerduty_events(notification, target.routing_key or "", runbook_url=runbook)
            label = "" if len(events) == 1 else "alert {}: "
            return [(label.format(event["dedup_key"]), event) for event in events]
        render = {
            "slack": channels.slack_message,
            "teams": channels.teams_message,
            "webhook": channels.webhook_payload,
        }[channel.kind]
        return [("", render(notification, runbook_url=runbook))]

    def _post(self, url: str, data: bytes) -> Answer:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "mlcycle-alerting"}
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Answer(ok=True, status=response.status)
        except urllib.error.HTTPError as exc:
            with exc:
                return _refusal(
                    exc.code, exc.headers.get("Retry-After") if exc.headers else None, exc.read(65536)
                )
        except ValueError as exc:  # a malformed URL: no attempt can succeed
            return Answer(ok=False, error=f"invalid URL ({type(exc).__name__})")
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return Answer(ok=False, error=f"network error: {type(reason).__name__}: {reason}", retryable=True)

    # SNS ----------------------------------------------------------------------------------------------

    def _publish(self, channel: AlertChannel, notification: Notification) -> Outcome:
        """Publish to the alerts topic: the subject and body for email, the short text for SMS."""
        if self._sns is None or not self._topic_arn:
            return Outcome(False, 0, None, f"channel {channel.name!r}: no SNS alerts topic is configured")
        message = channels.sns_message(notification, runbook_url=self.alerts.runbook_url)
        document = json.dumps({"default": message.body, "email": message.body, "sms": message.sms})
        sns, topic = self._sns, self._topic_arn

        def publish() -> Answer:
            try:
                sns.publish(
                    TopicArn=topic, Subject=message.subject, Message=document, MessageStructure="json"
                )
                return Answer(ok=True)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                transient = code in _SNS_TRANSIENT or (status or 0) >= 500
                return Answer(ok=False, error=f"SNS {code}: {exc}", retryable=transient)
            except BotoCoreError as exc:
                return Answer(ok=False, error=f"SNS: {type(exc).__name__}: {exc}", retryable=True)

        return self._attempt(channel, publish, self._redact)

    # Retries ------------------------------------------------------------------------------------------

    def _attempt(self, channel: AlertChannel, send: Callable[[], Answer], redact: Redactor) -> Outcome:
        """Up to ``max_attempts`` sends, waiting what the receiver asks or an exponential backoff."""
        limit = self.alerts.max_attempts
        for attempt in range(1, limit + 1):
            answer = send()
            error = redact(answer.error or "") or None
            if answer.ok or not answer.retryable or attempt == limit:
                return Outcome(answer.ok, attempt, answer.status, error)
            wait = answer.retry_after if answer.retry_after is not None else backoff(attempt)
            log.warning(
                "alert channel %s: attempt %d of %d failed (%s); retrying in %.1f s",
                channel.name, attempt, limit, error, wait,
            )  # fmt: skip
            self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns")

    # Secrets ------------------------------------------------------------------------------------------

    def _target(self, channel: AlertChannel) -> Target:
        """The channel's URL (and PagerDuty's routing key) from its secret: a plain value or JSON."""
        name = channel.secret or ""
        try:
            raw = self._secrets(name).strip()
        except Exception as exc:  # the reader's errors name the secret, never a value it did not get
            raise SecretUnavailableError(
                f"channel {channel.name!r}: cannot read secret {name!r} ({type(exc).__name__}: {exc})"[:600]
            ) from None
        document = _json_object(raw, channel, name)
        key: str | None = None
        if channel.kind == "pagerduty":
            key = _text(raw if document is None else document.get("routing_key"))
            url = (
                PAGERDUTY_EVENTS_URL if document is None else document.get("events_url", PAGERDUTY_EVENTS_URL)
            )
            if not key:
                raise SecretUnavailableError(
                    f"channel {channel.name!r}: secret {name!r} holds no routing key"
                )
        else:
            url = raw if document is None else document.get("url")
        web = _text(url)
        if not web or not channels.is_web_url(web):
            raise SecretUnavailableError(
                f"channel {channel.name!r}: secret {name!r} does not hold an http(s) URL"
            )
        return Target(url=web, routing_key=key, secrets=(raw, web, *([key] if key else [])))

    def _log(self, channel: AlertChannel, outcome: Outcome) -> None:
        if outcome.ok:
            log.info("alert channel %s: delivered (%d attempts)", channel.name, outcome.attempts)
        else:
            log.error("alert channel %s: delivery failed: %s", channel.name, outcome.error)


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _json_object(raw: str, channel: AlertChannel, name: str) -> dict[str, Any] | None:
    """The secret's JSON object, or None for a plain value; malformed JSON is named, not quoted."""
    if not raw.startswith("{"):
        return None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise SecretUnavailableError(
            f"channel {channel.name!r}: secret {name!r} starts like JSON but is not valid JSON"
        ) from None
    if not isinstance(document, dict):
        raise SecretUnavailableError(f"channel {channel.name!r}: secret {name!r} is not a JSON object")
    return document


def _refusal(status: int, retry_after_header: str | None, body: bytes) -> Answer:
    """A non-2xx answer: rate limits (429), timeouts (408) and server errors may pass; others will not."""
    text = body.decode("utf-8", "replace").strip()[:ERROR_BODY_CHARS]
    retryable = status in (408, 429) or status >= 500
    retry_after = parse_retry_after(retry_after_header) if retryable else None
    return Answer(
        False, status, f"HTTP {status}: {text}" if text else f"HTTP {status}", retryable, retry_after
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date, capped at 300 s; None if absent
    or unreadable (then the backoff applies)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """The wait after failed attempt ``attempt`` (1-based): half of min(cap, base * 2^(n-1)) plus a
    random share of the other half, so retries of many channels do not arrive in step."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
    return ceiling / 2 + (rng or _RNG).uniform(0, ceiling / 2)
