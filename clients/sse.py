"""A Server-Sent Events parser (the WHATWG ``text/event-stream`` format), over text lines.

Small enough to own rather than depend on: the REST client feeds it the lines of an
httpx streaming response and gets one :class:`ServerSentEvent` per dispatched event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""  # the stream's last event id when this one was dispatched ("": none yet)


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events of a stream given as lines without their line breaks.

    ``data:`` lines accumulate (joined by newlines), ``event:`` names the event (default
    ``message``), ``id:`` sets the last event id (kept for later events until another
    ``id:``, as a browser keeps it for ``Last-Event-ID``), comments (``:``) and other fields
    are ignored, and a blank line dispatches the event if it has data. An event cut off by
    the end of the stream is dropped, as a browser would.
    """
    event, data, last_id = "", [], ""
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
