"""`python -m schedules`: the scheduler process of the Procfile.

Recurring schedules are not built in this version; until they are, run `newsletter send-weekly`
from cron or by hand. This entry point says so plainly instead of pretending to run.
"""

import sys

if __name__ == "__main__":
    sys.stderr.write(
        "scheduler: recurring schedules are not built yet; run `newsletter send-weekly` "
        "(from cron or by hand) to send the week's issue\n"
    )
    sys.exit(1)
