"""Checks that SES events come back to us: configuration set → SNS topic → /hooks/ses.

The webhook records BOUNCE, COMPLAINT and DELIVERY events, and only from topics listed in
SNS_TOPIC_ARNS (see worker/web/hooks.py and worker/sns.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from worker.doctor.aws import AwsCallFailed, Problem, ses_call, ses_where, sns_subscriptions
from worker.doctor.base import CheckResult, Probe, Skipped, failed, passed

EVENT_TYPES = ("BOUNCE", "COMPLAINT", "DELIVERY")  # what worker.ses_events records


def check_configuration_set(probe: Probe) -> CheckResult:
    name = probe.settings.ses_configuration_set
    if not name:
        return failed(
            "ses-configuration-set",
            "SES_CONFIGURATION_SET is not set: bounces, complaints and deliveries never reach us",
            "create a configuration set with an SNS event destination; name it in "
            "SES_CONFIGURATION_SET",
        )
    try:
        answer = ses_call(probe, "GetConfigurationSet", ConfigurationSetName=name)
    except AwsCallFailed as failure:
        if failure.problem != Problem.NOT_FOUND:
            raise
        return failed(
            "ses-configuration-set",
            f"configuration set {name!r} does not exist in {ses_where(probe.settings)}: "
            "every send naming it fails",
            f"`aws sesv2 create-configuration-set --configuration-set-name {name}`, or correct "
            "SES_CONFIGURATION_SET",
        )
    if not answer.get("SendingOptions", {}).get("SendingEnabled", True):
        return failed(
            "ses-configuration-set",
            f"sending is disabled for configuration set {name!r}",
            f"`aws sesv2 put-configuration-set-sending-options --configuration-set-name {name} "
            "--sending-enabled`",
        )
    return passed("ses-configuration-set", f"{name!r} exists, sending enabled")


def _destinations(probe: Probe) -> list[Mapping[str, Any]]:
    name = probe.settings.ses_configuration_set
    if not name:
        raise Skipped("SES_CONFIGURATION_SET is not set", "fix the ses-configuration-set check")
    try:
        answer = ses_call(probe, "GetConfigurationSetEventDestinations", ConfigurationSetName=name)
    except AwsCallFailed as failure:
        if failure.problem != Problem.NOT_FOUND:
            raise
        raise Skipped(
            f"configuration set {name!r} does not exist", "fix the ses-configuration-set check"
        ) from None
    return list(answer.get("EventDestinations", []))


def _topics_by_event(destinations: list[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Event type → the SNS topics an enabled destination publishes it to."""
    topics: dict[str, set[str]] = {kind: set() for kind in EVENT_TYPES}
    for destination in destinations:
        arn = destination.get("SnsDestination", {}).get("TopicArn")
        if not destination.get("Enabled", False) or not arn:
            continue
        for kind in destination.get("MatchingEventTypes", []):
            topics.setdefault(str(kind), set()).add(str(arn))
    return topics


def _event_topics(probe: Probe) -> list[str]:
    """Every SNS topic SES publishes our event types to; Skipped when there is none."""
    by_event = _topics_by_event(_destinations(probe))
    topics = sorted(set().union(*(by_event[kind] for kind in EVENT_TYPES)))
    if not topics:
        raise Skipped("no SNS event destination", "fix the ses-event-destinations check first")
    return topics


def check_event_destinations(probe: Probe) -> CheckResult:
    name = probe.settings.ses_configuration_set
    destinations = _destinations(probe)
    by_event = _topics_by_event(destinations)
    missing = [kind for kind in EVENT_TYPES if not by_event[kind]]
    if missing:
        disabled = [str(d.get("Name")) for d in destinations if not d.get("Enabled", False)]
        return failed(
            "ses-event-destinations",
            f"{name!r} publishes no {', '.join(missing)} events to SNS"
            + (f" (disabled destinations: {', '.join(disabled)})" if disabled else ""),
            f"add an enabled event destination to {name!r} that sends BOUNCE, COMPLAINT and "
            "DELIVERY to an SNS topic (SES console, Configuration sets → Event destinations)",
        )
    kinds_by_topic: dict[str, list[str]] = {}
    for kind in EVENT_TYPES:
        for topic in sorted(by_event[kind]):
            kinds_by_topic.setdefault(topic, []).append(kind)
    routes = "; ".join(f"{', '.join(kinds)} → {topic}" for topic, kinds in kinds_by_topic.items())
    return passed("ses-event-destinations", routes)


def _same_url(left: str, right: str) -> bool:
    a, b = urlsplit(left), urlsplit(right)
    return (a.scheme.lower(), a.netloc.lower(), a.path.rstrip("/")) == (
        b.scheme.lower(),
        b.netloc.lower(),
        b.path.rstrip("/"),
    )


def _subscription_problem(
    topic: str, hook: str, subscriptions: list[Mapping[str, Any]]
) -> tuple[str, str] | None:
    """(detail, fix) when `topic` does not post to our hook over confirmed https; else None."""
    ours = [s for s in subscriptions if _same_url(str(s.get("Endpoint", "")), hook)]
    if any(s.get("Protocol") == "https" and _confirmed(s) for s in ours):
        return None
    subscribe = (
        f"`aws sns subscribe --topic-arn {topic} --protocol https --notification-endpoint "
        f"{hook}` (the web process confirms it)"
    )
    if any(s.get("Protocol") == "https" for s in ours):
        return (
            f"{topic}: the subscription of {hook} awaits confirmation",
            f"make sure {hook} is reachable and {topic} is in SNS_TOPIC_ARNS, then request "
            "confirmation again (SNS console, Subscriptions)",
        )
    if ours:
        return f"{topic} delivers to {hook} over {ours[0].get('Protocol')}, not https", subscribe
    others = [
        str(s.get("Endpoint")) for s in subscriptions if s.get("Protocol") in ("http", "https")
    ]
    elsewhere = f" (it posts to {', '.join(others)})" if others else ""
    return f"{topic} has no subscription to {hook}{elsewhere}", subscribe


def _confirmed(subscription: Mapping[str, Any]) -> bool:
    arn = str(subscription.get("SubscriptionArn", ""))
    return arn.startswith("arn:")  # SNS lists "PendingConfirmation" until the URL confirms


def check_subscription(probe: Probe) -> CheckResult:
    hook = f"{probe.settings.public_base_url}/hooks/ses"
    topics = _event_topics(probe)
    problems: list[tuple[str, str]] = []
    for topic in topics:
        try:
            problem = _subscription_problem(topic, hook, sns_subscriptions(probe, topic))
        except AwsCallFailed as failure:
            if failure.problem != Problem.NOT_FOUND:
                raise
            problem = (
                f"{topic} does not exist",
                "point the configuration set's event destination at an existing topic",
            )
        if problem:
            problems.append(problem)
    if not problems:
        return passed("sns-subscription", f"{', '.join(topics)} posts to {hook} (confirmed)")
    return failed("sns-subscription", "; ".join(detail for detail, _ in problems), problems[0][1])


def check_topic_allowed(probe: Probe) -> CheckResult:
    allowed = probe.settings.sns_topics
    try:
        topics = _event_topics(probe)
    except Skipped:
        if allowed:
            raise
        return failed(
            "sns-topic-allowed",
            "SNS_TOPIC_ARNS is empty: /hooks/ses refuses every notification",
            "set SNS_TOPIC_ARNS to the ARN of the topic SES publishes events to",
        )
    refused = [topic for topic in topics if topic not in allowed]
    if refused:
        return failed(
            "sns-topic-allowed",
            f"{', '.join(refused)} is not in SNS_TOPIC_ARNS: /hooks/ses refuses its notifications",
            f"add {', '.join(refused)} to SNS_TOPIC_ARNS (comma-separated)",
        )
    return passed("sns-topic-allowed", f"SNS_TOPIC_ARNS lists {', '.join(topics)}")
