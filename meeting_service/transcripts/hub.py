"""One LISTEN connection per process, fanning new events out to every subscriber.

Writers NOTIFY each meeting's newest sequence on commit (`notifications`). For each meeting with
subscribers the hub keeps a cursor (the newest sequence it has read) and, on a
notification, reads the events after it once and offers them to every subscriber of that
meeting. Each subscriber has a bounded buffer: when it is full, the subscriber stops being
fed live events and is told (`SubscriberLagged`, once its buffer is drained) to read what
it missed from the table, by sequence, before it takes live events again. So a subscriber
that reads slowly never slows the others nor grows memory, and a burst of events larger
than the buffer (one group commit of many segments) loses nothing. After the LISTEN
connection is lost and regained, every cursor is caught up from the table, so
notifications missed in between lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from gen.meeting.v1 import meeting_pb2
from meeting_service.db.database import CONNECTION_ERRORS, round_trip
from meeting_service.transcripts import messages, notifications
from meeting_service.transcripts.repository import EventsRepository
from mesh_common.logging import logger
from mesh_common.retry import Backoff

_FETCH_BATCH = 500


class SubscriberLagged(Exception):
    """The subscriber missed live events (its buffer was full): read them from the table.

    Every event it missed was committed before this was raised, and every event committed
    later reaches its buffer again (until it is full again).
    """


class HubClosed(Exception):
    """The hub is shutting down (the server is stopping)."""


class Subscription:
    """A subscriber's view of one meeting's new events, in sequence order."""

    def __init__(self, meeting_id: uuid.UUID, limit: int) -> None:
        self.meeting_id = meeting_id
        self._limit = limit
        self._items: deque[meeting_pb2.TranscriptEvent] = deque()
        self._wake = asyncio.Event()
        self._lagging = False
        self._closed = False
        self.lags = 0  # how many times it fell behind (for tests and metrics)

    def offer(self, event: meeting_pb2.TranscriptEvent, *, force: bool = False) -> None:
        """Buffers an event, or drops it when the buffer is full (see `SubscriberLagged`).

        Args:
            event: The event (shared by every subscriber: never changed).
            force: Buffer even when full (the final `deleted` event).
        """
        if not force:
            if self._lagging:
                return
            if len(self._items) >= self._limit:
                self._lagging = True
                self.lags += 1
                self._wake.set()
                return
        self._items.append(event)
        self._wake.set()

    def close(self) -> None:
        """Ends the subscription once its buffered events are taken."""
        self._closed = True
        self._wake.set()

    async def next(self) -> meeting_pb2.TranscriptEvent:
        """Waits for the next event.

        Raises:
            SubscriberLagged: After the buffered events, when live events were dropped;
                from then on new events are buffered again.
            HubClosed: After the buffered events, when the hub shut down.
        """
        while True:
            if self._items:
                return self._items.popleft()
            if self._lagging:
                self._lagging = False
                raise SubscriberLagged
            if self._closed:
                raise HubClosed
            self._wake.clear()
            await self._wake.wait()


@dataclass
class _Channel:
    """Subscribers of one meeting and what the hub has read for them."""

    subscribers: set[Subscription] = field(default_factory=set)
    cursor: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    deleted_at: int | None = None
    task: asyncio.Task[None] | None = None


class EventHub:
    """The process's LISTEN connection and its subscribers."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        events: EventsRepository,
        *,
        queue_size: int,
        check_interval: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._events = events
        self._queue_size = queue_size
        self._check_interval = check_interval
        self._channels: dict[uuid.UUID, _Channel] = {}
        self._listening = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._listening.is_set()

    def subscriber_count(self, meeting_id: uuid.UUID) -> int:
        """How many subscribers a meeting has."""
        channel = self._channels.get(meeting_id)
        return 0 if channel is None else len(channel.subscribers)

    def lag_count(self, meeting_id: uuid.UUID) -> int:
        """How many times a meeting's current subscribers fell behind their buffer."""
        channel = self._channels.get(meeting_id)
        return 0 if channel is None else sum(s.lags for s in channel.subscribers)

    async def start(self) -> None:
        """Starts listening (reconnecting by itself when the connection is lost)."""
        self._task = asyncio.create_task(self._listen_forever(), name="event-hub-listener")

    async def wait_listening(self, within: float) -> None:
        """Waits until the LISTEN connection is up.

        Raises:
            TimeoutError: It was not up within `within` seconds.
        """
        await asyncio.wait_for(self._listening.wait(), within)

    async def close(self) -> None:
        """Ends every subscription and stops listening."""
        self._closing = True
        for channel in self._channels.values():
            for subscription in channel.subscribers:
                subscription.close()
            if channel.task is not None:
                channel.task.cancel()
        self._channels.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def subscribe(self, meeting_id: uuid.UUID) -> AsyncIterator[Subscription]:
        """Subscribes to a meeting's events committed from now on.

        Every event committed after this returns reaches the subscription (unless it is
        cut off), so a caller that reads the stored log *after* subscribing, then drains
        the subscription skipping what it already has, sees no gap and no duplicate.

        Args:
            meeting_id: The meeting.

        Yields:
            The subscription; it ends when the block exits.

        Raises:
            HubClosed: The hub is shutting down.
        """
        if self._closing:
            raise HubClosed
        channel = self._channels.setdefault(meeting_id, _Channel())
        subscription = Subscription(meeting_id, self._queue_size)
        channel.subscribers.add(subscription)
        try:
            if channel.cursor is None:
                async with channel.lock:
                    if channel.cursor is None:
                        channel.cursor = await self._events.last_sequence(self._pool, meeting_id)
            yield subscription
        finally:
            channel.subscribers.discard(subscription)
            if not channel.subscribers and self._channels.get(meeting_id) is channel:
                del self._channels[meeting_id]
                if channel.task is not None:
                    channel.task.cancel()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notification = notifications.decode(payload)
        except ValueError:
            logger.bind(payload=payload[:200]).warning("ignoring malformed event notification")
            return
        channel = self._channels.get(notification.meeting_id)
        if channel is None:
            return
        if notification.deleted:
            channel.deleted_at = notification.sequence
        self._kick(notification.meeting_id, channel)

    def _kick(self, meeting_id: uuid.UUID, channel: _Channel) -> None:
        channel.dirty = True
        if channel.task is None or channel.task.done():
            channel.task = asyncio.create_task(self._drain(meeting_id, channel))

    async def _drain(self, meeting_id: uuid.UUID, channel: _Channel) -> None:
        # Notifications that arrive while a read runs only set `dirty`, so a burst of
        # events costs a few reads, not one per event.
        try:
            while channel.dirty and channel.subscribers:
                channel.dirty = False
                async with channel.lock:
                    if channel.cursor is None:
                        continue
                    await self._deliver_new(meeting_id, channel)
                    if channel.deleted_at is not None:
                        self._deliver_deleted(meeting_id, channel, channel.deleted_at)
                        return
        except CONNECTION_ERRORS as error:
            # The listener catches every channel up once the database is back.
            logger.bind(meeting_id=str(meeting_id), error=repr(error)).warning(
                "could not read new events"
            )

    async def _deliver_new(self, meeting_id: uuid.UUID, channel: _Channel) -> None:
        assert channel.cursor is not None
        while True:
            rows = await self._events.list_after(
                self._pool, meeting_id, channel.cursor, _FETCH_BATCH
            )
            subscribers = list(channel.subscribers)
            for row in rows:
                event = messages.event(row)
                for subscription in subscribers:
                    subscription.offer(event)
                channel.cursor = row.sequence
            if len(rows) < _FETCH_BATCH:
                return

    def _deliver_deleted(self, meeting_id: uuid.UUID, channel: _Channel, sequence: int) -> None:
        event = meeting_pb2.TranscriptEvent(
            sequence=sequence, meeting_id=str(meeting_id), deleted=meeting_pb2.MeetingDeleted()
        )
        event.create_time.GetCurrentTime()
        for subscription in channel.subscribers:
            subscription.offer(event, force=True)
            subscription.close()
        channel.subscribers.clear()

    async def _listen_forever(self) -> None:
        backoff = Backoff(initial=0.1, maximum=2.0)
        while not self._closing:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(notifications.CHANNEL, self._on_notification)
                self._listening.set()
                logger.info("listening for transcript events")
                backoff.reset()
                for meeting_id, channel in list(self._channels.items()):
                    self._kick(meeting_id, channel)
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    if not lost.is_set():
                        await round_trip(connection, self._check_interval)
            except CONNECTION_ERRORS as error:
                logger.bind(error=repr(error)).warning("event listener lost the database")
            finally:
                self._listening.clear()
                if connection is not None:
                    connection.terminate()
            if not self._closing:
                await asyncio.sleep(backoff.next_delay())
