"""Alerting without alert fatigue: events become alerts (fingerprinted), routed, grouped, inhibited and
silenced the way Alertmanager does it, then delivered to SNS, Slack, PagerDuty, Teams or a webhook with
retries; every alert and delivery is kept in DynamoDB (``mlcycle alerts``)."""
