"""moto's own server (moto_server) for the twin, with three of moto 5.2.5's per-request costs
made constant. What SQS and S3 answer is unchanged; only how much CPU moto spends per call.

Measured with py-spy on the refunds pipeline (`make bench`), where moto shared two cores with
DynamoDB Local and every function:
- Receiving a message checks its retention period by asking for the queue's attributes, and
  moto computes every one of them, each approximate count scanning every message in the
  queue: O(messages received x messages queued), about a fifth of moto's CPU. The check here
  reads the one attribute it needs.
- Routing each request lists moto's package folder (about 150 `isdir` calls): a tenth. The
  folder does not change while the server runs, so it is listed once.
- One log line per request (werkzeug's access log): warnings and errors are still logged.

Run by the twin with the venv's python: `python launch.py -H 127.0.0.1 -p <port>`.
"""

import logging
import sys

import moto
from moto import backends
from moto.server import main
from moto.sqs import models as sqs

# The patches know moto 5.2.5's insides (scripts/setup.sh pins it); any other version runs as
# it comes.
TUNED_FOR = "5.2.5"


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > sqs.unix_time()


def tune():
    sqs.SQSBackend.is_message_valid_based_on_retention_period = _within_retention
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


if __name__ == "__main__":
    if moto.__version__ == TUNED_FOR:
        tune()
    else:
        print(f"moto {moto.__version__}: running untuned (tuned for {TUNED_FOR})", file=sys.stderr)
    main(sys.argv[1:])
