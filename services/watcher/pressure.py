"""Back-pressure and sending, over connections the watcher keeps: asking the broker for the parse queue's
depth on a new connection costs about 8 ms, on a kept one under 1 ms; a message sent through a kept
producer about half of what `send_task` alone costs."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu import Connection

from shared.ledger import chunked
from shared.queues import Queue, TaskName


class ParseQueue:
    def __init__(self, app: Celery, *, max_depth: int, batch_size: int) -> None:
        self.app = app
        self.max_depth = max_depth
        self.batch_size = batch_size
        self.conn: Connection | None = None

    def depth(self) -> int:
        """Messages waiting on the parse queue (0 before anyone declared it)."""
        if self.conn is None:
            self.conn = self.app.connection_for_write()
        try:
            return self.conn.default_channel.queue_declare(queue=Queue.PARSE.value, passive=True).message_count
        except self.conn.channel_errors:
            self.close()  # an AMQP channel is closed by the error: start afresh next time
            return 0
        except BaseException:
            self.close()
            raise

    def room(self) -> tuple[int, int]:
        """(files that may be taken now, depth): messages up to one over the limit, as the reconciler counts a
        queue over its limit as waiting rather than lost."""
        depth = self.depth()
        return max(0, self.max_depth + 1 - depth) * self.batch_size, depth

    def send(self, drop_ids: Sequence[int]) -> int:
        """Send queued drops to the parse queue, batch_size per message, as shared.ledger.dispatch does."""
        sent = 0
        with self.app.producer_or_acquire() as producer:
            for batch in chunked(sorted(drop_ids), self.batch_size):
                self.app.send_task(TaskName.PARSE, kwargs={"drop_ids": batch}, producer=producer)
                sent += 1
        return sent

    def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.release()
