"""A meeting's transcript shown as it grows, for `meeting-mesh follow` and `upload`.

Each final segment is printed once, when it first arrives. The pipeline sends every segment
again once diarization has labelled it; those labels are not worth the transcript a second
time, so the view prints only the speaker turns they reveal (who spoke from when to when),
once, when diarization is over. A meeting that is already over is read whole and printed
once with its speakers. With `--json` nothing is printed as it arrives: the final state
(the meeting, every final segment with its speaker, the summary) is one JSON document.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from meeting_mesh.client import GatewayClient, GatewayError, SseEvent

COMPLETED = "MEETING_STATUS_COMPLETED"
FAILED = "MEETING_STATUS_FAILED"
_OVER = {COMPLETED, FAILED}
# Statuses after diarization: the labels of every segment have arrived by then.
_DIARIZED = {"MEETING_STATUS_SUMMARIZING", COMPLETED, FAILED}


def clock(offset: str) -> str:
    """Formats a JSON Duration ("75.5s") as minutes and seconds ("01:15")."""
    seconds = float(offset.rstrip("s") or 0)
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def status_label(status: str) -> str:
    """A MeetingStatus name in lower case without its prefix ("completed")."""
    return status.removeprefix("MEETING_STATUS_").lower()


def action_item_line(item: dict[str, Any]) -> str:
    """One action item with its owner and due date, when the transcript gave them."""
    extra = [f"owner: {item['owner']}"] if item.get("owner") else []
    if item.get("due"):
        extra.append(f"due: {item['due']}")
    text = str(item.get("text", ""))
    return text + (f" ({', '.join(extra)})" if extra else "")


class TranscriptView:
    """Shows one meeting's events the way a person reads a transcript.

    Args:
        console: Where to print.
        as_json: Print nothing as events arrive; `document` is the result.
    """

    def __init__(self, console: Console, *, as_json: bool = False) -> None:
        self.console = console
        self.as_json = as_json
        self.segments: dict[int, dict[str, Any]] = {}  # index -> latest final version
        self._printed: set[int] = set()
        self._labelled_late: set[int] = set()
        self.status = ""
        self.failure = ""
        self.summary: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """Whether the meeting is over (completed, failed or deleted)."""
        return self.status in _OVER or bool(self.failure)

    def show(self, event: SseEvent) -> None:
        """Takes one event of the meeting's stream."""
        if event.event == "segment":
            self.segment(event.data["segment"])
        elif event.event == "status":
            change = event.data["statusChange"]
            self.status_changed(change["status"], change.get("reason", ""))
        elif event.event == "summary":
            self.summarized(event.data["summary"])
        elif event.event == "error":
            self.failure = event.data.get("error", {}).get("message", "stream error")
        elif event.event == "deleted":
            self.failure = "the meeting was deleted"

    def segment(self, segment: dict[str, Any]) -> None:
        """Takes a version of a segment; a final one is printed the first time only."""
        if not segment.get("final"):
            return
        index = int(segment.get("index", 0))
        self.segments[index] = segment
        if index not in self._printed:
            self._printed.add(index)
            self._line(segment)
        elif segment.get("speaker"):
            self._labelled_late.add(index)

    def status_changed(self, status: str, reason: str = "") -> None:
        """Takes a status change; leaving diarization prints the speaker turns."""
        self.status = status
        if status in _DIARIZED:
            self._turns()
        if status == FAILED:
            self.failure = reason or "processing failed"
        if not self.as_json:
            said = f": {escape(reason)}" if reason else ""
            self.console.print(f"[dim]-- {status_label(status)}{said}[/dim]")

    def summarized(self, summary: dict[str, Any]) -> None:
        """Takes the summary and prints it with its action items."""
        self.summary = summary
        if self.as_json:
            return
        self.console.print(f"\n[bold]Summary[/bold]\n{escape(summary.get('text', ''))}")
        items = summary.get("actionItems", [])
        if items:
            self.console.print("\n[bold]Action items[/bold]")
        for item in items:
            self.console.print(f"  - {escape(action_item_line(item))}")

    def document(self, meeting: dict[str, Any]) -> dict[str, Any]:
        """The result as one JSON object: the meeting, its final segments and summary."""
        segments = [self.segments[i] for i in sorted(self.segments)]
        speakers = list(dict.fromkeys(s["speaker"] for s in segments if s.get("speaker")))
        return {
            "meeting": meeting,
            "segments": segments,
            "speakers": speakers,
            "summary": self.summary,
        }

    def print_document(self, meeting: dict[str, Any]) -> None:
        """Prints `document` as JSON."""
        self.console.print_json(json.dumps(self.document(meeting)))

    def _line(self, segment: dict[str, Any]) -> None:
        if self.as_json:
            return
        speaker = segment.get("speaker", "")
        who = f"[bold cyan]{escape(speaker)}[/bold cyan]: " if speaker else ""
        start = clock(segment.get("startOffset", "0s"))
        self.console.print(f"[dim]{start}[/dim] {who}{escape(segment.get('text', '').strip())}")

    def _turns(self) -> None:
        """Prints who spoke when, for segments printed before their speaker was known."""
        late = sorted(self._labelled_late)
        self._labelled_late.clear()
        if not late or self.as_json:
            return
        turns: list[list[Any]] = []  # [speaker, start, end]
        for index in late:
            segment = self.segments[index]
            speaker = segment.get("speaker", "")
            start, end = segment.get("startOffset", "0s"), segment.get("endOffset", "0s")
            if turns and turns[-1][0] == speaker:
                turns[-1][2] = end
            else:
                turns.append([speaker, start, end])
        self.console.print("\n[bold]Speakers[/bold]")
        for speaker, start, end in turns:
            self.console.print(
                f"[dim]{clock(start)}-{clock(end)}[/dim] [bold cyan]{escape(speaker)}[/bold cyan]"
            )


async def follow(client: GatewayClient, meeting_id: str, view: TranscriptView) -> dict[str, Any]:
    """Shows a meeting until it is over; returns the meeting as it ended.

    A meeting that is already over is read whole (transcript and summary) rather than
    replayed event by event.

    Raises:
        GatewayError: The gateway refused.
    """
    meeting = await client.meeting(meeting_id)
    if meeting["status"] in _OVER:
        transcript = await client.transcript(meeting_id)
        for segment in transcript.get("segments", []):
            view.segment(segment)
        if meeting["status"] == COMPLETED:
            try:
                view.summarized(await client.summary(meeting_id))
            except GatewayError as error:
                if error.status != 400:  # NOT_READY: completed without a summary
                    raise
        view.status_changed(meeting["status"], meeting.get("failureReason", ""))
        return meeting
    async for event in client.events(meeting_id):
        view.show(event)
        if view.finished:
            break
    if view.status in _OVER:
        return await client.meeting(meeting_id)
    return meeting
