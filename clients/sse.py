"""A Server-Sent Events parser (the WHATWG ``text/event-stream`` format), over text lines.

Small enough to own rather than depend on: the REST clients feed it the lines of an httpx
streaming response (sync or async) and get one :class:`ServerSentEvent` per dispatched
event.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""  # the stream's last event id when this one was dispatched ("": none yet)


@dataclass
class SseDecoder:
    """Lines in, events out. ``data:`` lines accumulate (joined by newlines), ``event:``
    names the event (default ``message``), ``id:`` sets the last event id (kept for later
    events until another ``id:``, as a browser keeps it for ``Last-Event-ID``), comments
    (``:``) and other fields are ignored, and a blank line dispatches the event if it has
    data. An event cut off by the end of the stream is never dispatched, as in a browser."""

    last_id: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line without its line break; the event it completes, if any."""
        if not line:
            done = None
            if self._data:
                done = ServerSentEvent(
                    self._event or "message", "\n".join(self._data), self.last_id
                )
            self._event, self._data = "", []
            return done
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events of a stream given as lines without their line breaks."""
    decoder = SseDecoder()
    for line in lines:
        if (event := decoder.feed(line)) is not None:
            yield event


async def parse_sse_async(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """:func:`parse_sse` over an async stream of lines."""
    decoder = SseDecoder()
    async for line in lines:
        if (event := decoder.feed(line)) is not None:
            yield event
