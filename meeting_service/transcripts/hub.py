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
notifications missed in between lose nothing; a read that fails while the listener stays
up (a pooled connection died) is tried again by its meeting's channel, with backoff.

Users' feeds (`USER_CHANNEL`) are fanned out the same way, keyed by owner instead of
meeting: the same buffers, cursors and catch-up, without an end.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from gen.meeting.v1 import meeting_pb2, user_events_pb2
from meeting_service.db.database import CONNECTION_ERRORS, round_trip
from meeting_service.transcripts import messages, notifications
from meeting_service.transcripts.repository import EventsRepository, UserEventsRepository
from mesh_common.logging import logger
from mesh_common.retry import Backoff

_FETCH_BATCH = 500
# Longest pause between a channel's attempts to read events the database failed to give.
_READ_RETRY_MAX_S = 5.0


class SubscriberLagged(Exception):
    """The subscriber missed live events (its buffer was full): read them from the table.

    Every event it missed was committed before this was raised, and every event committed
    later reaches its buffer again (until it is full again).
    """


class HubClosed(Exception):
    """The hub is shutting down (the server is stopping)."""


class _Sequenced(Protocol):
    @property
    def sequence(self) -> int: ...


class Subscription[E: _Sequenced]:
    """A subscriber's view of one meeting's (or one owner's) new events, in sequence order."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[E] = deque()
        self._wake = asyncio.Event()
        self._lagging = False
        self._closed = False
        self.lags = 0  # how many times it fell behind (for tests and metrics)

    def offer(self, event: E, *, force: bool = False) -> None:
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

    async def next(self) -> E:
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
class _Channel[E: _Sequenced]:
    """Subscribers of one meeting (or owner) and what the hub has read for them."""

    subscribers: set[Subscription[E]] = field(default_factory=set)
    cursor: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    deleted_at: int | None = None
    task: asyncio.Task[None] | None = None


class _Fanout[K: Hashable, E: _Sequenced]:
    """The channels of one kind of key (meetings or owners) and their reads.

    Args:
        name: What a key is, for logs ("meeting", "owner").
        queue_size: Each subscriber's buffer.
        last: Reads a key's newest sequence.
        after: Reads a key's events after a sequence, oldest first, at most a batch.
        final: Builds the last event of a key that ended at a sequence (a deleted meeting).
    """

    def __init__(
        self,
        name: str,
        queue_size: int,
        last: Callable[[K], Awaitable[int]],
        after: Callable[[K, int, int], Awaitable[list[E]]],
        final: Callable[[K, int], E] | None = None,
    ) -> None:
        self._name = name
        self._queue_size = queue_size
        self._last = last
        self._after = after
        self._final = final
        self.channels: dict[K, _Channel[E]] = {}

    def close(self) -> None:
        for channel in self.channels.values():
            for subscription in channel.subscribers:
                subscription.close()
            if channel.task is not None:
                channel.task.cancel()
        self.channels.clear()

    @contextlib.asynccontextmanager
    async def subscribe(self, key: K) -> AsyncIterator[Subscription[E]]:
        channel = self.channels.setdefault(key, _Channel())
        subscription: Subscription[E] = Subscription(self._queue_size)
        channel.subscribers.add(subscription)
        try:
            if channel.cursor is None:
                async with channel.lock:
                    if channel.cursor is None:
                        channel.cursor = await self._last(key)
            yield subscription
        finally:
            channel.subscribers.discard(subscription)
            if not channel.subscribers and self.channels.get(key) is channel:
                del self.channels[key]
                if channel.task is not None:
                    channel.task.cancel()

    def notify(self, key: K, *, ended_at: int | None = None) -> None:
        """A key's log moved on (or ended at `ended_at`): read it for its subscribers."""
        channel = self.channels.get(key)
        if channel is None:
            return
        if ended_at is not None:
            channel.deleted_at = ended_at
        self.kick(key, channel)

    def kick(self, key: K, channel: _Channel[E]) -> None:
        channel.dirty = True
        if channel.task is None or channel.task.done():
            channel.task = asyncio.create_task(self._drain(key, channel))

    def kick_all(self) -> None:
        for key, channel in list(self.channels.items()):
            self.kick(key, channel)

    async def _drain(self, key: K, channel: _Channel[E]) -> None:
        # Notifications that arrive while a read runs only set `dirty`, so a burst of
        # events costs a few reads, not one per event.
        backoff = Backoff(initial=0.1, maximum=_READ_RETRY_MAX_S)
        while channel.dirty and channel.subscribers:
            channel.dirty = False
            try:
                async with channel.lock:
                    if channel.cursor is None:
                        continue
                    await self._deliver_new(key, channel)
                    if channel.deleted_at is not None and self._final is not None:
                        self._deliver_final(channel, self._final(key, channel.deleted_at))
                        return
            except CONNECTION_ERRORS as error:
                # The read failed while the listener may well be up (a pooled connection
                # died, a query timed out): no reconnect of the listener would catch
                # this channel up, so it reads again itself until it gets through.
                if backoff.failures == 0:  # once per outage, not once per attempt
                    logger.bind(**{self._name: str(key)}, error=repr(error)).warning(
                        "could not read new events; reading again"
                    )
                channel.dirty = True
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()

    async def _deliver_new(self, key: K, channel: _Channel[E]) -> None:
        assert channel.cursor is not None
        while True:
            events = await self._after(key, channel.cursor, _FETCH_BATCH)
            subscribers = list(channel.subscribers)
            for event in events:
                for subscription in subscribers:
                    subscription.offer(event)
                channel.cursor = event.sequence
            if len(events) < _FETCH_BATCH:
                return

    def _deliver_final(self, channel: _Channel[E], event: E) -> None:
        for subscription in channel.subscribers:
            subscription.offer(event, force=True)
            subscription.close()
        channel.subscribers.clear()


class EventHub:
    """The process's LISTEN connection and its subscribers.

    The connection is asked a trivial query every `check_interval` seconds, answered
    within as long: a database that went silent (no FIN, no RST) is found within twice
    `check_interval`, and the connection is made again (within `connect_timeout` a try).
    """

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        events: EventsRepository,
        user_events: UserEventsRepository,
        *,
        queue_size: int,
        check_interval: float = 2.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._check_interval = check_interval
        self._connect_timeout = connect_timeout
        self._listening = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

        async def meeting_events(
            meeting_id: uuid.UUID, after: int, limit: int
        ) -> list[meeting_pb2.TranscriptEvent]:
            rows = await events.list_after(pool, meeting_id, after, limit)
            return [messages.event(row) for row in rows]

        async def owner_events(
            owner: str, after: int, limit: int
        ) -> list[user_events_pb2.UserEvent]:
            rows = await user_events.list_after(pool, owner, after, limit)
            return [messages.user_event(row) for row in rows]

        self._meetings: _Fanout[uuid.UUID, meeting_pb2.TranscriptEvent] = _Fanout(
            "meeting_id",
            queue_size,
            lambda meeting_id: events.last_sequence(pool, meeting_id),
            meeting_events,
            _deleted_event,
        )
        self._owners: _Fanout[str, user_events_pb2.UserEvent] = _Fanout(
            "owner", queue_size, lambda owner: user_events.last_sequence(pool, owner), owner_events
        )

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._listening.is_set()

    def subscriber_count(self, meeting_id: uuid.UUID) -> int:
        """How many subscribers a meeting has."""
        channel = self._meetings.channels.get(meeting_id)
        return 0 if channel is None else len(channel.subscribers)

    def lag_count(self, meeting_id: uuid.UUID) -> int:
        """How many times a meeting's current subscribers fell behind their buffer."""
        channel = self._meetings.channels.get(meeting_id)
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
        self._meetings.close()
        self._owners.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def subscribe(
        self, meeting_id: uuid.UUID
    ) -> AsyncIterator[Subscription[meeting_pb2.TranscriptEvent]]:
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
        async with self._meetings.subscribe(meeting_id) as subscription:
            yield subscription

    @contextlib.asynccontextmanager
    async def subscribe_owner(
        self, owner: str
    ) -> AsyncIterator[Subscription[user_events_pb2.UserEvent]]:
        """Subscribes to an owner's feed events committed from now on (as `subscribe`).

        Raises:
            HubClosed: The hub is shutting down.
        """
        if self._closing:
            raise HubClosed
        async with self._owners.subscribe(owner) as subscription:
            yield subscription

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notification = notifications.decode(payload)
        except ValueError:
            logger.bind(payload=payload[:200]).warning("ignoring malformed event notification")
            return
        self._meetings.notify(
            notification.meeting_id,
            ended_at=notification.sequence if notification.deleted else None,
        )

    def _on_user_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notification = notifications.decode_user(payload)
        except ValueError:
            logger.bind(payload=payload[:200]).warning("ignoring malformed feed notification")
            return
        self._owners.notify(notification.owner)

    async def _listen_forever(self) -> None:
        backoff = Backoff(initial=0.1, maximum=2.0)
        while not self._closing:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(notifications.CHANNEL, self._on_notification)
                await connection.add_listener(
                    notifications.USER_CHANNEL, self._on_user_notification
                )
                self._listening.set()
                logger.info("listening for transcript events")
                backoff.reset()
                self._meetings.kick_all()
                self._owners.kick_all()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    if not lost.is_set():
                        await round_trip(connection, self._check_interval)
            except CONNECTION_ERRORS as error:
                logger.bind(error=repr(error)).warning("event listener lost the database")
            except Exception:
                # Subscribers depend on this loop: whatever went wrong, it must not end
                # (health is NOT_SERVING until it listens again).
                logger.exception("event listener failed; it starts again")
            finally:
                self._listening.clear()
                if connection is not None:
                    connection.terminate()
            if not self._closing:
                await asyncio.sleep(backoff.next_delay())


def _deleted_event(meeting_id: uuid.UUID, sequence: int) -> meeting_pb2.TranscriptEvent:
    event = meeting_pb2.TranscriptEvent(
        sequence=sequence, meeting_id=str(meeting_id), deleted=meeting_pb2.MeetingDeleted()
    )
    event.create_time.GetCurrentTime()
    return event
