"""From per-digit answers to a value worth publishing: the rolling-drum rule and the plausibility gate.

Values are counts in units of the last digit (``1234.5 m³`` with one decimal is ``12345``), so no
float ever decides anything. :class:`Gate` keeps the last published count and its time, and for
each new reading:

1. **Digits.** A digit the model calls "not a digit", or reads with less than ``min_score``, is
   unknown. A digit that no count between the last value and the most the meter can have
   counted since (``max_rate`` x the time elapsed) shows in its place is unknown too: a drum
   caught half-way is often read as some other digit (0.2 of the way from 8 to 9 looks like 3).
2. **The rolling drum.** Unknown digits (at most ``max_unknown``) are filled in with the smallest
   count that matches the known digits and is not below the last value: a drum half-way between
   two digits shows the lower one until it has turned. With no last value yet, nothing is filled.
3. **Plausibility**, each with its own status: a count below the last is ``decreasing`` (unless
   ``allow_decrease``) - except one step below it, which is the rolling last drum read the other
   way and republishes the last value; above the rate limit is ``rate``; a jump that only a
   misread digit explains (one place changed between a confusable pair such as 0/9, 1/7, 6/8) is
   ``held`` until ``confirm`` further readings agree; the very first value also waits for
   ``confirm`` agreeing readings (``confirming``), since every later check leans on it.

Thread safety: a :class:`Gate` is state for one meter; call it from one thread (or under a lock).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Sequence

from .config import PlausibilityConfig

__all__ = ["Decision", "Gate", "STATUSES", "allowed_digits", "fill_unknown", "format_count"]

log = logging.getLogger(__name__)

#: Every status a reading can have, and what it means.
STATUSES = {
    "ok": "published",
    "unaligned": "the frame could not be aligned to the reference; not read",
    "uncertain": "too many digits unreadable, or none of their values fits; withheld",
    "decreasing": "lower than the last value; withheld",
    "rate": "more than the meter can count in the time since the last value; withheld",
    "held": "a jump only a misread digit explains; held until the next readings confirm it",
    "confirming": "the first value, waiting for the next readings to agree",
}


@dataclass(frozen=True)
class Decision:
    """What the gate made of one reading.

    Attributes:
        status: One of :data:`STATUSES`.
        count: The count to publish (status ``ok``), else None.
        digits: The digits used, left to right, None where unknown (after the rules).
        reason: A few words on why, for the log and the page.
    """

    status: str
    count: int | None
    digits: tuple[int | None, ...]
    reason: str = ""


def format_count(count: int, n: int, decimals: int) -> str:
    """A count as the meter shows it.

    >>> format_count(12345, 6, 1), format_count(7, 4, 0)
    ('01234.5', '0007')
    """
    s = str(count).rjust(n, "0")
    return f"{s[: n - decimals]}.{s[n - decimals :]}" if decimals else s


def allowed_digits(lo: int, hi: int, n: int) -> list[set[int]]:
    """Per place (left to right), the digits some count in ``lo..hi`` shows there.

    >>> [sorted(s) for s in allowed_digits(1287, 1290, 4)]
    [[1], [2], [8, 9], [0, 7, 8, 9]]
    """
    out = []
    for k in range(n - 1, -1, -1):
        unit = 10**k
        a, b = lo // unit, hi // unit
        out.append(set(range(10)) if b - a >= 9 else {q % 10 for q in range(a, b + 1)})
    return out


def fill_unknown(digits: Sequence[int | None], lo: int, hi: int) -> int | None:
    """The smallest count in ``lo..hi`` whose digits match the known ones (None = any digit), or None.

    >>> fill_unknown([1, 2, 9, None], 1296, 1300), fill_unknown([1, 3, None, None], 1296, 1305)
    (1296, 1300)
    >>> fill_unknown([1, 2, None, 5], 1296, 1300) is None
    True
    """
    n = len(digits)
    unknown = [i for i, d in enumerate(digits) if d is None]
    if not unknown:
        v = int("".join(map(str, digits)))
        return v if lo <= v <= hi else None
    allowed = allowed_digits(max(lo, 0), min(hi, 10**n - 1), n)
    best = None
    base = list(digits)
    for combo in itertools.product(*(sorted(allowed[i]) for i in unknown)):
        for i, d in zip(unknown, combo):
            base[i] = d
        v = int("".join(map(str, base)))
        if lo <= v <= hi and (best is None or v < best):
            best = v
    return best


def _one_place_change(a: int, b: int, n: int) -> tuple[int, int, int] | None:
    """``(place, digit in a, digit in b)`` when a and b differ in exactly one place, else None."""
    sa, sb = str(a).rjust(n, "0"), str(b).rjust(n, "0")
    diff = [i for i in range(n) if sa[i] != sb[i]]
    return (diff[0], int(sa[diff[0]]), int(sb[diff[0]])) if len(diff) == 1 else None


class Gate:
    """The plausibility gate of one meter (see the module docstring).

    Args:
        rules: The plausibility settings.
        digits: How many digits the meter shows.
        decimals: Digits right of the decimal point (the rate is per unit, the counts per last digit).
        last: The last published ``(count, time)``, e.g. from the history after a restart.
        rolling: Counter drums (digits roll, so an unreadable one may be filled in from the last
            value); False for an LCD, whose unreadable digits make the reading uncertain.
    """

    def __init__(
        self,
        rules: PlausibilityConfig,
        *,
        digits: int,
        decimals: int,
        last: tuple[int, float] | None = None,
        rolling: bool = True,
    ) -> None:
        self.rules = rules
        self.rolling = rolling
        self.n = digits
        self.decimals = decimals
        self.last = last
        self._pending: tuple[int, float, int] | None = None  # (count, time, agreeing readings)
        self._pairs = {frozenset((int(p[0]), int(p[1]))) for p in rules.confusable}

    @property
    def top(self) -> int:
        return 10**self.n - 1

    def _headroom(self, since: float, now: float) -> int:
        """Counts the meter can have advanced from ``since`` to ``now`` (plus one for a drum caught turning)."""
        if self.rules.max_rate <= 0:
            return self.top
        hours = max(0.0, now - since) / 3600.0
        return math.ceil(self.rules.max_rate * hours * 10**self.decimals) + 1

    def decide(self, digits: Sequence[int | None], scores: Sequence[float], now: float) -> Decision:
        """Turns one reading into a decision, updating the gate's state.

        Args:
            digits: The model's digit per place, left to right; None for "not a digit".
            scores: Their probabilities.
            now: The frame's time (seconds, any epoch, increasing).

        Returns:
            The :class:`Decision`; when its status is ``ok`` the gate's last value is now its count.
        """
        r = self.rules
        read = [d if d is not None and s >= r.min_score else None for d, s in zip(digits, scores)]
        if self.last is None:
            return self._first(read, now)
        last, t_last = self.last
        lo = 0 if r.allow_decrease else last
        hi = min(self.top, last + self._headroom(t_last, now))
        if not r.allow_decrease:
            allowed = allowed_digits(lo, hi, self.n)
            read = [d if d is None or d in allowed[i] else None for i, d in enumerate(read)]
        unknown = sum(d is None for d in read)
        if unknown and not self.rolling:
            return Decision("uncertain", None, tuple(read), f"{unknown} digits unreadable")
        trailing = self.n - max((i + 1 for i, d in enumerate(read) if d is not None), default=0)
        nines = len(str(last)) - len(str(last).rstrip("9")) if last else 0
        # drums turning over together (0129|99 -> 0130|00) are a run of unknowns at the right end,
        # as long as the 9s right of the drum they carry into; fill such a run when the meter
        # cannot have gone round the last drum since
        carry = 0 < unknown == trailing <= nines + 1 < self.n and hi - lo <= 10
        if unknown > r.max_unknown and not carry:
            return Decision("uncertain", None, tuple(read), f"{unknown} digits unreadable (at most {r.max_unknown})")
        count = fill_unknown(read, lo, hi)
        if count is None and not unknown:
            v = int("".join(map(str, read)))
            if v == last - 1 and self.rolling and not r.allow_decrease:  # the last drum read one step back
                count = last
            elif r.max_unknown and self.rolling:  # one digit misread: the least sure one, if the others fit
                worst = min(range(self.n), key=lambda i: scores[i])
                count = fill_unknown([None if i == worst else d for i, d in enumerate(read)], lo, hi)
            if count is None and v < last:
                return Decision("decreasing", None, tuple(read), f"{v} is below the last value {last}")
            if count is None:
                return Decision("rate", None, tuple(read), f"{v} is more than {hi - last} above {last} so soon")
        if count is None:
            return Decision("uncertain", None, tuple(read), "no value fits the digits read and the last value")
        return self._jump(count, tuple(read), now)

    def _first(self, read: list[int | None], now: float) -> Decision:
        if any(d is None for d in read):
            self._pending = None
            return Decision("uncertain", None, tuple(read), "no last value to fill unreadable digits from")
        v = int("".join(map(str, read)))
        p = self._pending
        if p is not None and p[0] <= v <= p[0] + self._headroom(p[1], now):
            agreed = p[2] + 1
        else:
            agreed = 0
        self._pending = (v, now, agreed)
        if agreed >= self.rules.confirm:
            return self._publish(v, tuple(read), now)
        return Decision("confirming", None, tuple(read), f"first value, {agreed}/{self.rules.confirm} agreeing")

    def _jump(self, count: int, read: tuple[int | None, ...], now: float) -> Decision:
        last = self.last[0] if self.last else 0
        p = self._pending
        if p is not None:
            if p[0] <= count <= p[0] + self._headroom(p[1], now):
                agreed = p[2] + 1
                if agreed >= self.rules.confirm:
                    log.info("held value %d confirmed by %d readings (now %d)", p[0], agreed, count)
                    return self._publish(count, read, now)
                self._pending = (count, now, agreed)
                return Decision("held", None, read, f"jump to {p[0]} confirmed {agreed}/{self.rules.confirm}")
            self._pending = None  # the next reading went back: the jump was a misread
        change = _one_place_change(last, count, self.n) if count != last else None
        if change is not None and frozenset(change[1:]) in self._pairs and count - last > 1:
            self._pending = (count, now, 0)
            place = change[0]
            return Decision(
                "held", None, read, f"place {place + 1} went {change[1]} -> {change[2]}, a pair the model confuses"
            )
        return self._publish(count, read, now)

    def _publish(self, count: int, read: tuple[int | None, ...], now: float) -> Decision:
        self.last = (count, now)
        self._pending = None
        return Decision("ok", count, read)
