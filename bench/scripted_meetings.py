"""Scripted meetings with their ground truth, for the `summaries` scenario.

Each meeting is a list of (speaker, text) lines cut where a recognizer cuts segments (a due
phrase alone in the next line, a sentence across two lines), with traps that are not
action items: wishes ("I should..."), suggestions ("maybe we should"), questions, past
events and plain predictions. The truth lists its decisions (a key phrase each) and its
action items (owner, due phrase as stated in lower case or "" when none, and a key phrase
of the item's text).

The first three (`tuned=True`) were written beside the extractive rules and used while
writing them; the other four were written afterwards and never used to change the rules,
so they are the held-out measure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """An action item of the truth.

    Attributes:
        owner: Who committed (a speaker's name).
        due: The due phrase as stated, in lower case; "" when none was stated.
        key: A phrase the item's text must hold.
    """

    owner: str
    due: str
    key: str


@dataclass(frozen=True)
class ScriptedMeeting:
    """A meeting's lines and its truth."""

    name: str
    lines: tuple[tuple[str, str], ...]
    decisions: tuple[str, ...]
    items: tuple[Item, ...]
    tuned: bool


MEETINGS: tuple[ScriptedMeeting, ...] = (
    ScriptedMeeting(
        "launch",
        (
            ("Priya", "Should we launch on the 15th of March?"),
            ("Tom", "No, the payment service is not ready."),
            ("Priya", "Then we decided the launch is moved to"),
            ("Priya", "the 22nd of March."),
            ("Tom", "I will finish the payment tests."),
            ("Tom", "By Friday."),
            ("Priya", "I'll tell the customers next week."),
            ("Tom", "I should hide them for me."),
        ),
        ("22nd of march",),
        (Item("Tom", "by friday", "payment tests"), Item("Priya", "next week", "customers")),
        tuned=True,
    ),
    ScriptedMeeting(
        "budget",
        (
            ("Ana", "Travel costs doubled this year."),
            ("Ben", "We agreed to cut the travel budget by ten percent."),
            ("Ana", "Ana will draft the new policy."),
            ("Ana", "By Monday."),
            ("Ben", "I'll send the numbers to finance tomorrow."),
            ("Ana", "We could maybe look at cheaper hotels."),
        ),
        ("cut the travel budget",),
        (Item("Ana", "by monday", "draft the new policy"), Item("Ben", "tomorrow", "numbers")),
        tuned=True,
    ),
    ScriptedMeeting(
        "hiring",
        (
            ("Chen", "Both candidates were strong."),
            ("Dana", "Let's go with the second candidate."),
            ("Chen", "Chen is going to call her today."),
            ("Dana", "I need to check the references"),
            ("Dana", "before Thursday."),
            ("Chen", "It will rain on Thursday anyway."),
        ),
        ("second candidate",),
        (Item("Chen", "today", "call her"), Item("Dana", "before thursday", "references")),
        tuned=True,
    ),
    ScriptedMeeting(
        "laptops",
        (
            ("Lena", "We have two offers for the new laptops."),
            ("Omar", "Vendor B is cheaper and delivers faster."),
            ("Lena", "Okay, so we go with vendor B."),
            ("Omar", "I'll place the order"),
            ("Omar", "by the end of the week."),
            ("Lena", "Did you send the old laptops back?"),
            ("Omar", "I sent them back yesterday."),
            ("Omar", "Lena, can you update the inventory sheet?"),
            ("Lena", "Sure, I can do that tomorrow."),
        ),
        ("vendor b",),
        (
            Item("Omar", "by the end of the week", "place the order"),
            Item("Lena", "tomorrow", "do that"),
        ),
        tuned=False,
    ),
    ScriptedMeeting(
        "offsite",
        (
            ("Sam", "The offsite is in June this year."),
            ("Rita", "We decided on Lisbon rather than Porto."),
            ("Sam", "Rita is going to book the hotel"),
            ("Sam", "before the 10th of May."),
            ("Rita", "Maybe we should also invite the partners."),
            ("Sam", "I will ask finance for the budget next Monday."),
            ("Rita", "If the budget is approved, I'll send the invitations."),
        ),
        ("lisbon",),
        (
            Item("Rita", "before the 10th of may", "book the hotel"),
            Item("Sam", "next monday", "ask finance"),
            Item("Rita", "", "send the invitations"),
        ),
        tuned=False,
    ),
    ScriptedMeeting(
        "incident",
        (
            ("Kai", "The outage on Tuesday lasted two hours."),
            ("Mia", "The root cause was an expired certificate."),
            ("Kai", "From now on certificates are renewed automatically, that's agreed."),
            ("Mia", "I'm going to write the postmortem"),
            ("Mia", "by Thursday."),
            ("Kai", "Kai will add an alert for expiring certificates."),
            ("Mia", "We should have caught this earlier."),
        ),
        ("renewed automatically",),
        (
            Item("Mia", "by thursday", "postmortem"),
            Item("Kai", "", "add an alert"),
        ),
        tuned=False,
    ),
    ScriptedMeeting(
        "roadmap",
        (
            ("Jo", "Let's keep the mobile app on hold until next quarter."),
            ("Lee", "Fine by me."),
            ("Jo", "The API docs are out of date."),
            ("Lee", "I need to rewrite the authentication section"),
            ("Lee", "by the 30th."),
            ("Lee", "And Jo has to review the pricing page this week."),
            ("Jo", "I will probably be on holiday next week."),
        ),
        ("mobile app on hold",),
        (
            Item("Lee", "by the 30th", "authentication section"),
            Item("Jo", "this week", "pricing page"),
        ),
        tuned=False,
    ),
)
