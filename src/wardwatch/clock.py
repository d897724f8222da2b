"""The ward's clock: the wall clock, or the simulated time of a replay.

A replay runs patients' past hours at, say, 3600 times real speed. Everything that reasons
about "now" — how old the last vital sign is, whether a pause has ended, how long a checklist
item has left — must then use the replay's time, or a paused alert would never come back and
every value would look days old. The replay writes its time into `ward_clock`; without a row
the ward runs on the wall clock, as in production.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select

from wardwatch.store.schema import ward_clock

_NAME = "ward"


def ward_now(conn: Connection) -> datetime:
    """The simulated time if a replay runs, else the wall clock (aware UTC)."""
    simulated = conn.execute(select(ward_clock.c.now).where(ward_clock.c.name == _NAME)).scalar()
    return simulated if simulated is not None else datetime.now(UTC)


def ward_time(moment: datetime | None, now: datetime | None = None) -> str:
    """A moment as the ward writes it: "14:00" on the day of `now`, else "19 Nov 03:00" (UTC).

    A bare "03:00" for a pause that ends tomorrow reads as three hours, not twenty-seven.
    """
    if moment is None:
        return "—"
    if now is not None and moment.date() == now.date():
        return f"{moment:%H:%M}"
    return f"{moment:%d %b %H:%M}"


def set_ward_clock(conn: Connection, now: datetime, speed: float) -> None:
    """Move the simulated clock (replay only)."""
    conn.execute(delete(ward_clock).where(ward_clock.c.name == _NAME))
    conn.execute(insert(ward_clock).values(name=_NAME, now=now, speed=speed))


def clear_ward_clock(conn: Connection) -> None:
    """Back to the wall clock."""
    conn.execute(delete(ward_clock).where(ward_clock.c.name == _NAME))
