"""Verifying the audit chain: walk it once, in order, and say what is wrong and where.

    verify(conn, anchors=...) -> Verification     every problem, as a sentence with its seq

A break is reported once, where it is, and the walk then continues from the stored values, so
one altered record is one problem rather than a cascade. What each kind of tampering looks like:

- **altered** (a field changed): the record's hash no longer matches its content; its
  `field_sums` name the field unless the attacker fixed them too.
- **missing** (a record deleted): a gap in seq.
- **moved / swapped** (rows renumbered or reordered): a record hashes right under another seq;
  a renumbered run is one problem ("records 5–999 hold the contents of records 6–1000").
- **broken_link** (a record rewritten with its hash recomputed, or one inserted): the next
  record's prev_hash is not its hash.
- **anchor_mismatch / truncated** (the chain rewritten to the end, or its tail deleted): only
  visible against an anchor: stored, the head row, or one kept outside and given here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from wardwatch.security.audit import (
    CONTENT,
    GENESIS,
    Anchor,
    AuditRecord,
    chain_hash,
    field_sums,
    records,
    stored_anchors,
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the chain, at records `first`..`last`, said for a person."""

    kind: str  # missing | altered | moved | swapped | broken_link | anchor_mismatch | truncated
    first: int
    last: int
    message: str
    shift: int = 0  # moved: the record at n holds the content of record n + shift


@dataclass(slots=True)
class Verification:
    """What verify found: how far the chain goes, the newest anchor it matched, the problems."""

    records: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    anchor: Anchor | None = None  # the newest anchor the chain was checked against
    problems: list[Problem] = field(default_factory=list)
    not_shown: int = 0  # problems beyond the first `max_problems`

    @property
    def intact(self) -> bool:
        return not self.problems


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}–{last}"


class _Walk:
    """The state of one pass over the chain: what record must come next, and what was found."""

    def __init__(self, anchors: Sequence[Anchor], max_problems: int) -> None:
        self.result = Verification()
        self.anchors: dict[int, list[Anchor]] = {}
        for anchor in anchors:
            self.anchors.setdefault(anchor.seq, []).append(anchor)
        self.max_problems = max_problems
        self.expected_seq, self.expected_prev = 1, (GENESIS,)
        self.after_move, self.last_shift = False, 0
        self.move_at = -1  # index in problems of the newest "moved", which a next may extend

    def add(self, problem: Problem) -> None:
        found = self.result.problems
        if problem.kind == "moved" and self.move_at >= 0 and self._merged(problem):
            return
        if len(found) >= self.max_problems:
            self.result.not_shown += 1
            return
        if problem.kind == "moved":
            self.move_at = len(found)
        found.append(problem)

    def _merged(self, problem: Problem) -> bool:
        """A renumbered run is one problem; two neighbours moved by +1 and -1 were swapped."""
        found = self.result.problems
        last = found[self.move_at]
        if last.kind != "moved" or last.last + 1 != problem.first:
            return False
        if last.shift == problem.shift:
            found[self.move_at] = _moved(last.first, problem.last, problem.shift)
            return True
        if (last.first, last.shift, problem.shift) == (last.last, 1, -1):
            text = f"records {last.first} and {problem.first} were swapped"
            found[self.move_at] = Problem("swapped", last.first, problem.first, text)
            return True
        return False

    def check(self, row: AuditRecord) -> None:
        if row.seq > self.expected_seq:
            first, last = self.expected_seq, row.seq - 1
            count = _plural(last - first + 1, "record")
            self.add(
                Problem("missing", first, last, f"{_span(first, last)} missing ({count} deleted)")
            )
        computed = chain_hash(row.prev_hash, row.seq, row[1:11], row.field_sums)
        moved = False
        if computed != row.hash:
            problem = _diagnose(row, self.last_shift, linked=not self._unlinked(row))
            self.last_shift, moved = problem.shift, problem.kind == "moved"
            self.add(problem)
        elif self._unlinked(row) and not self.after_move:  # after a move, the move explains it
            self.add(Problem("broken_link", row.seq, row.seq, _broken_link(row.seq)))
        if not moved:  # a moved record's hash is another seq's: no anchor can match it
            for anchor in self.anchors.get(row.seq, ()):
                self._against(anchor, row)
        self.after_move = moved
        # After an altered record the next one may follow its stored hash (the content was
        # changed) or the recomputed one (the hash was): either way not a second problem.
        self.expected_seq, self.expected_prev = row.seq + 1, (row.hash, computed)
        result = self.result
        result.records, result.last_seq, result.last_hash = result.records + 1, row.seq, row.hash

    def _unlinked(self, row: AuditRecord) -> bool:
        """Its prev_hash is not the hash before it (after a gap, the gap is the problem)."""
        return row.seq == self.expected_seq and row.prev_hash not in self.expected_prev

    def _against(self, anchor: Anchor, row: AuditRecord) -> None:
        if anchor.hash != row.hash:
            self.add(Problem("anchor_mismatch", row.seq, row.seq,
                             f"record {row.seq} does not match {anchor.where}: the chain was "
                             "rewritten up to here"))  # fmt: skip
        elif self.result.anchor is None or anchor.seq >= self.result.anchor.seq:
            self.result.anchor = anchor

    def finish(self) -> Verification:
        beyond = [a for seq, group in self.anchors.items() if seq > self.result.last_seq
                  for a in group]  # fmt: skip
        if beyond:
            top = max(beyond, key=lambda a: (a.seq, a.at is not None))  # a dated one if a tie
            end = self.result.last_seq
            ends = f"ends at record {end}" if end else "is empty"
            removed = _plural(top.seq - end, "record")
            self.add(Problem("truncated", end + 1, top.seq,
                             f"the chain {ends} but {top.where} says it reached {top.seq}: "
                             f"{removed} removed from the end"))  # fmt: skip
        return self.result


def _broken_link(seq: int) -> str:
    return (
        f"record {seq} does not follow record {seq - 1}: record {seq - 1} was rewritten "
        "(and its hash recomputed), or records were inserted or removed between them"
    )


def _moved(first: int, last: int, shift: int) -> Problem:
    count = abs(shift)
    why = (f"{_plural(count, 'record')} removed just before record {first}" if shift > 0
           else f"{_plural(count, 'record')} inserted just before record {first} "
                f"(likely {_span(first - count, first - 1)})")  # fmt: skip
    text = (f"record {first} holds the content of record {first + shift}" if first == last
            else f"records {first}–{last} hold the contents of records "
                 f"{first + shift}–{last + shift}")  # fmt: skip
    return Problem("moved", first, last, f"{text}: rows were renumbered; {why}", shift)


def _diagnose(row: AuditRecord, last_shift: int, *, linked: bool) -> Problem:
    """A record whose hash does not match its content: moved from another seq, or altered.

    A moved record hashes right under the seq it was written with; the shift of the record
    before is tried first, so a renumbered tail of a million rows costs one hash each.
    """
    content = row[1:11]
    shifts = [last_shift] if last_shift else []
    shifts += [d for k in range(1, 17) for d in (k, -k) if d not in shifts]
    for shift in shifts:
        if row.seq + shift > 0 and row.hash == chain_hash(
            row.prev_hash, row.seq + shift, content, row.field_sums
        ):
            return _moved(row.seq, row.seq, shift)
    sums = field_sums(content)
    changed = [name for i, name in enumerate(CONTENT)
               if sums[4 * i : 4 * i + 4] != row.field_sums[4 * i : 4 * i + 4]]  # fmt: skip
    # No field's checksum differs: a chain column was changed, or a field and its checksum.
    column = "hash" if linked else "prev_hash"
    chain = f"its {column} column (or a field with its checksum) was changed"
    what = f"{', '.join(changed)} changed" if changed else chain
    return Problem("altered", row.seq, row.seq, f"record {row.seq} altered: {what}")


def verify(
    conn: Connection,
    *,
    anchors: Sequence[Anchor] = (),
    batch: int = 10_000,
    max_problems: int = 100,
) -> Verification:
    """Walk the whole chain in seq order (bounded memory) and report every break.

    Checked: each record's hash against its content (altered or moved records), seq
    continuity (deleted records), each prev_hash against the previous hash (rewritten or
    inserted records), and the chain against the stored anchors, the head row and `anchors`
    given from outside (rewritten chains, a removed tail).
    """
    walk = _Walk([*stored_anchors(conn), *anchors], max_problems)
    for row in records(conn, batch=batch):
        walk.check(row)
    return walk.finish()
