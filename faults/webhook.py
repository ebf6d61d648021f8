"""A flood of signed SNS notifications at /hooks/ses, served by the real web app (uvicorn) on the
deployment's database: each notification posted several times at once, as SNS retries do."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from faults.deployment import SECRET, Deployment
from faults.events import bounce_event, delivery_event
from tests.live_site import LiveSite
from tests.sns_signing import TOPIC, notification, signing_cert
from worker.sns import Verifier

POSTERS = 16


@dataclass
class Posted:
    requests: int
    deliveries: int  # distinct deliveries a delivery event was posted for
    bounces: int  # distinct readers a permanent bounce was posted for
    errors: int  # answers other than 200


class Flood:
    def __init__(self, deploy: Deployment) -> None:
        self.deploy = deploy
        self.site = LiveSite(
            deploy.folder / "web",
            DATABASE_URL=deploy.database_url,
            SECRET_KEY=SECRET,
            SNS_TOPIC_ARNS=TOPIC,
            LOG_LEVEL="WARNING",  # not a line per notification in the suite's output
        )
        pem = signing_cert().pem
        self.site.app.state.sns_verifier = Verifier(
            topics=frozenset({TOPIC}), fetch_cert=lambda _url: pem
        )

    def __enter__(self) -> Flood:
        self.site.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.__exit__(*exc)

    def post_all(self, *, copies: int, bounce_share: float, seed: int) -> Posted:
        accepted = list(self.deploy.faults.accepted)
        chooser = random.Random(seed)
        bounced = chooser.sample(accepted, int(len(accepted) * bounce_share))
        now = datetime.now(UTC)
        bodies = [
            json.dumps(notification(delivery_event(a), message_id=f"d-{a.message_id}", sent_at=now))
            for a in accepted
        ] + [
            json.dumps(notification(bounce_event(a), message_id=f"b-{a.message_id}", sent_at=now))
            for a in bounced
        ]
        posts = bodies * copies
        chooser.shuffle(posts)
        url = f"{self.site.base}/hooks/ses"

        def post(chunk: list[str]) -> int:
            errors = 0
            with httpx.Client(timeout=30) as client:
                for body in chunk:
                    answer = client.post(
                        url, content=body, headers={"x-amz-sns-message-type": "Notification"}
                    )
                    errors += answer.status_code != 200
            return errors

        chunks = [posts[i::POSTERS] for i in range(POSTERS)]
        with ThreadPoolExecutor(POSTERS) as pool:
            errors = sum(pool.map(post, chunks))
        return Posted(
            requests=len(posts),
            deliveries=len({a.delivery_header for a in accepted}),
            bounces=len({a.recipient for a in bounced}),
            errors=errors,
        )
