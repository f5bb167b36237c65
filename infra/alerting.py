"""Alerting: the topics alarms and the alert router publish to, with the email and SMS subscribers."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from mlcycle.config import Settings


class Alerting(Construct):
    """Attributes: ``alerts`` (things a human must look at), ``notifications`` (for information)."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, key: kms.IKey) -> None:
        super().__init__(scope, id)
        self.alerts = self._topic("Alerts", f"{settings.prefix} alerts", key)
        self.notifications = self._topic("Notifications", f"{settings.prefix} notifications", key)
        for email in settings.alerts.emails:
            self.alerts.add_subscription(subs.EmailSubscription(email))
        for number in settings.alerts.phone_numbers:
            self.alerts.add_subscription(subs.SmsSubscription(number))

    def _topic(self, id: str, display_name: str, key: kms.IKey) -> sns.Topic:
        return sns.Topic(self, id, display_name=display_name, master_key=key, enforce_ssl=True)
