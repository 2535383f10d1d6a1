"""Summaries that cannot invent anything: TextRank sentences, yake keywords, rule-based actions.

Sentences are rebuilt across segment boundaries first: a line of the same speaker that
continues an unfinished sentence, or that is only a due phrase ("By Friday."), joins the
sentence before it, so a commitment keeps its date. The summary is the decisions ("we
decided...", "the launch is moved to...") and then the highest-ranked other sentences,
verbatim and in their original order. Sentences are ranked by TextRank (PageRank over a
graph weighted by the cosine similarity of their TF-IDF vectors): a sentence that shares
content words with many others is central to the meeting. Action items come from
commitments stated in the text ("Maria will send the report on Friday": owner "Maria",
due "on Friday", quote: the sentence); "I will..." is owned by the line's speaker.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gen.gpu.v1 import gpu_pb2

ENGINE_NAME = "extractive"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9']+")
_STOPWORDS = frozenset(
    """
    a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just let's lets me more most my no nor not now of off on once only or other
    our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours okay ok yes yeah
    um uh well thanks thank
    """.split()  # noqa: SIM905
)

_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DUE = re.compile(
    rf"\b(?:(?:on|by|before|until|next|this|after)\s+(?:the\s+)?"
    rf"(?:{_WEEKDAYS}|{_MONTHS}|week|month|quarter|year|morning|afternoon|evening|"
    rf"end\s+of\s+(?:the\s+)?(?:day|week|month|quarter|year)|\d{{1,2}}(?:st|nd|rd|th)?)"
    rf"(?:\s+(?:{_MONTHS}|morning|afternoon|evening|\d{{1,2}}(?:st|nd|rd|th)?))?"
    rf"|tomorrow(?:\s+(?:morning|afternoon|evening))?|today|tonight|asap|eod)\b",
    re.IGNORECASE,
)
# A line that is only a due phrase, finishing the sentence before it ("By Friday.").
_DUE_ONLY = re.compile(rf"(?:{_DUE.pattern})[.!?]?", re.IGNORECASE)
# Someone commits: "<Name|I|We> will|'ll|is going to|needs to ... <verb> ...". A wish or an
# opinion ("should", "could") commits no one.
_COMMITMENT = re.compile(
    r"\b(?P<owner>I|We|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"
    r"(?:\s+will|'ll|\s+is\s+going\s+to|\s+are\s+going\s+to|\s+am\s+going\s+to|"
    r"\s+needs?\s+to|\s+has\s+to|\s+have\s+to|\s+must)"
    r"\s+(?!be\b|have\s+been\b)(?P<action>[a-z].*)",
)
# Something was decided: "we decided/agreed", "the decision is", "let's go with", "<it> is
# moved/postponed/approved to/for ...".
_DECISION = re.compile(
    r"\b(?:we|I|they|everyone)\s+(?:have\s+|all\s+)?(?:decided|agreed)\b"
    r"|\bdecision\s+is\b|\bdecided\s+to\b|\blet'?s\s+go\s+with\b"
    r"|\bwe(?:'ll|\s+will)\s+go\s+with\b"
    r"|\b(?:is|are|was|were|has\s+been|have\s+been)\s+"
    r"(?:moved|postponed|pushed|rescheduled|approved|confirmed|cancell?ed)\b",
    re.IGNORECASE,
)
_ACTION_ITEM = re.compile(r"\baction\s+item\s*[:,-]\s*(?P<action>.+)", re.IGNORECASE)
_NOT_OWNERS = frozenset(
    """
    It This That There Which What Who He She They You Everyone Nobody Someone Something
    Nothing Everything Here Then Now So And But Or If When Where Why How
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Sentence:
    """A sentence of the transcript, verbatim, with who said it."""

    text: str
    speaker: str


def split_sentences(lines: Sequence[gpu_pb2.TranscriptLine]) -> list[Sentence]:
    """Splits transcript lines into sentences, rebuilt across segment boundaries.

    A line's first sentence joins the sentence before it when the same speaker says both
    and that sentence did not end (no closing punctuation) or the line is only a due
    phrase ("By Friday."). Joined text is the lines' own text, separated by a space.

    Args:
        lines: The transcript.

    Returns:
        Non-empty sentences in order.
    """
    sentences: list[Sentence] = []
    for line in lines:
        parts = [part.strip() for part in _SENTENCE_END.split(line.text.strip()) if part.strip()]
        for position, part in enumerate(parts):
            previous = sentences[-1] if sentences else None
            if (
                position == 0
                and previous is not None
                and previous.speaker == line.speaker
                and (not previous.text.endswith((".", "!", "?")) or _DUE_ONLY.fullmatch(part))
            ):
                sentences[-1] = Sentence(f"{previous.text} {part}", line.speaker)
            else:
                sentences.append(Sentence(part, line.speaker))
    return sentences


def find_decisions(sentences: Sequence[Sentence]) -> list[str]:
    """The sentences that state a decision, verbatim, in order."""
    return [s.text for s in sentences if _DECISION.search(s.text)]


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]


def textrank(sentences: Sequence[str], damping: float = 0.85) -> list[float]:
    """Scores sentences by TextRank over TF-IDF cosine similarity.

    Args:
        sentences: The sentences.
        damping: PageRank's damping factor.

    Returns:
        One score per sentence; higher is more central.
    """
    n = len(sentences)
    if n == 0:
        return []
    bags = [Counter(_content_words(s)) for s in sentences]
    document_frequency = Counter(word for bag in bags for word in bag)
    vocabulary = {word: i for i, word in enumerate(sorted(document_frequency))}
    vectors = np.zeros((n, max(len(vocabulary), 1)))
    for row, bag in enumerate(bags):
        for word, count in bag.items():
            idf = math.log((1 + n) / (1 + document_frequency[word])) + 1.0
            vectors[row, vocabulary[word]] = count * idf
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    out_weight = similarity.sum(axis=1, keepdims=True)
    # A sentence with no shared words links to every sentence evenly (a dangling node).
    transition = np.where(out_weight > 0, similarity / np.maximum(out_weight, 1e-12), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(100):
        updated = (1 - damping) / n + damping * transition.T @ scores
        if np.abs(updated - scores).sum() < 1e-9:
            scores = updated
            break
        scores = updated
    # Among equals, a sentence with more content says more.
    return [float(s) + 1e-6 * len(bag) for s, bag in zip(scores, bags, strict=True)]


def extract_summary(
    sentences: Sequence[Sentence], max_sentences: int, decisions: Sequence[str] = ()
) -> str:
    """Picks the decisions and the most central sentences, in transcript order.

    Args:
        sentences: The transcript's sentences.
        max_sentences: How many to keep at most.
        decisions: Sentences that must be kept first (up to `max_sentences`).

    Returns:
        The summary: chosen sentences, verbatim, joined by spaces.
    """
    kept = {i for i, s in enumerate(sentences) if s.text in set(decisions)}
    kept = set(sorted(kept)[:max_sentences])
    candidates = [
        i for i, s in enumerate(sentences) if i not in kept and len(_content_words(s.text)) >= 2
    ] or [i for i in range(len(sentences)) if i not in kept]
    scores = textrank([sentences[i].text for i in candidates])
    ranked = sorted(range(len(candidates)), key=lambda i: -scores[i])
    kept |= {candidates[i] for i in ranked[: max(0, max_sentences - len(kept))]}
    return " ".join(sentences[i].text for i in sorted(kept))


def find_action_items(sentences: Sequence[Sentence]) -> list[gpu_pb2.SummaryActionItem]:
    """Finds commitments stated in the transcript.

    Args:
        sentences: The transcript's sentences.

    Returns:
        One item per commitment, with owner and due phrase where the sentence states them.
    """
    items = []
    for sentence in sentences:
        text = sentence.text.rstrip(".!?").strip()
        owner = ""
        match = _COMMITMENT.search(text)
        if match is not None and match.group("owner") not in _NOT_OWNERS:
            owner = match.group("owner")
            if owner == "I":
                owner = sentence.speaker
            elif owner == "We":
                owner = ""
            action_start = match.start()
        elif (explicit := _ACTION_ITEM.search(text)) is not None:
            action_start = explicit.start("action")
        else:
            continue
        due = _DUE.search(text[action_start:])
        items.append(
            gpu_pb2.SummaryActionItem(
                text=text[action_start:],
                owner=owner,
                due=due.group(0) if due else "",
                quote=sentence.text,
            )
        )
    return items


def find_keywords(text: str, language: str, top: int = 8) -> list[str]:
    """Key phrases by yake, most important first.

    Args:
        text: The whole transcript.
        language: BCP-47 code ("" means English).
        top: How many at most.

    Returns:
        Distinct phrases (case-insensitively).
    """
    import yake

    if not text.strip():
        return []
    extractor = yake.KeywordExtractor(lan=(language or "en").split("-")[0], n=2, top=top * 2)
    keywords: list[str] = []
    seen: set[str] = set()
    for phrase, _score in extractor.extract_keywords(text):
        key = phrase.lower()
        if key not in seen and not any(key in other or other in key for other in seen):
            seen.add(key)
            keywords.append(phrase)
    return keywords[:top]


class ExtractiveSummarizer:
    """`SummarizationEngine` that only quotes the transcript."""

    name = ENGINE_NAME

    def __init__(self, default_sentences: int = 4) -> None:
        """Creates the summarizer.

        Args:
            default_sentences: Summary length when the caller gives 0.
        """
        self._default_sentences = default_sentences

    async def summarize(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """Summarizes a transcript (see `SummarizationEngine.summarize`).

        Args:
            lines: The transcript in order.
            language: BCP-47 code, or "".
            max_sentences: Most sentences; 0 means the default.

        Returns:
            Summary, action items and keywords; all empty for an empty transcript.
        """
        return await asyncio.to_thread(self.summarize_now, lines, language, max_sentences)

    def summarize_now(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """The blocking work of `summarize`, for callers already off the event loop."""
        sentences = split_sentences(lines)
        decisions = find_decisions(sentences)
        return gpu_pb2.SummarizeResponse(
            summary=extract_summary(sentences, max_sentences or self._default_sentences, decisions),
            action_items=find_action_items(sentences),
            keywords=find_keywords(" ".join(s.text for s in sentences), language),
            engine=self.name,
            decisions=decisions,
        )
