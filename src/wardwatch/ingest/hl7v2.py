"""HL7 v2.x ORU^R01 result messages in, domain values out; HL7 acknowledgements back.

`parse_message` turns one message into a `ParsedMessage` (header facts plus a domain `Parsed`:
patients, encounters, one `Reported` per OBX); `ack` builds the answer. A message we cannot
take raises an `HL7Error`, whose class says which answer it gets::

    HL7Error(ValueError)     .reason, .ack_code, .condition (HL7 table 0357), .control_id
    ├── MessageRejected      AR: not a message we take at all: no MSH, a batch, not ORU^R01,
    │                        an unsupported version or processing id
    └── MessageInvalid       AE: ours but broken: truncated or garbled header, no PID or
                             patient id, no OBR, segments out of order or garbled

Decisions, each one place:

- Segments may be separated by CR (the wire), LF or CRLF (files); `normalize` makes them CR.
- HL7 times without a UTC offset are, by the standard, in the sender's local time. We do not
  know that zone, so they are read in `default_tz` (UTC unless the caller says otherwise;
  configure the sending facility's zone) and returned as aware UTC datetimes.
- Nothing in an OBX is dropped: an empty (pending) result, an unreadable time or a text value
  still yields a `Reported` (value None, value_text as sent); the quality gate decides.
- A result the sender marks wrong or deleted (OBX-11 W or D) becomes a `Rejection`
  ("result_withdrawn"), never a `Reported`. Corrections (C) are ordinary results.
- An invalid birth date (PID-7) does not refuse the message: the patient is kept without a
  birth date and a `Rejection` ("invalid_birth_date") records what was sent.
- OBX-2 types NM, ST, TX, FT (and a missing type) give a number when the text is one
  ("4.06", "<5"); SN gives a number for "^182", "<^5", ">=^10", never for ratios or ranges
  ("1^:^2"); every other type (CE, CWE, FN, DT ...) keeps its text only.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from wardwatch.domain import Encounter, Parsed, Patient, Rejection, Reported, Sex

SOURCE = "hl7v2"
LOINC = "LN"

# HL7 table 0357, message error condition codes, with the names an ERR segment carries.
CONDITIONS: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_HEADERS = frozenset({"MSH", "BHS", "FHS"})
_VERSION = re.compile(r"2\.[1-9](?:\.[0-9]{1,2})?\Z")
_PROCESSING_IDS = frozenset({"", "P", "T", "D"})  # production, training, debugging
_TS = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?\Z"
)
_NUMBER = re.compile(r"\s*(<=|>=|<|>|=)?\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\Z")
_SN_COMPARATORS = frozenset({"", "=", "<", ">", "<=", ">="})
_NUMERIC_TEXT_TYPES = frozenset({"", "NM", "ST", "TX", "FT"})
_CODING_SYSTEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,19}\Z")  # LN, L, 99ZZZ, SCT ...
_LOINC_CODE = re.compile(r"\d{1,7}-\d\Z")
_WITHDRAWN = {  # OBX-11 result statuses that must never reach the model as a measurement
    "W": "OBX-11 status W: the sender posted this result as wrong (e.g. wrong patient)",
    "D": "OBX-11 status D: the sender deleted this result",
}
_SEX = {"M": Sex.MALE, "F": Sex.FEMALE}  # U, O, A, N and anything else: unknown
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HL7Error(ValueError):
    """A message we cannot take; `ack_code` is the answer it gets (AE or AR)."""

    ack_code = "AE"

    def __init__(self, reason: str, *, condition: str = "207", control_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.condition = condition
        self.control_id = control_id


class MessageRejected(HL7Error):
    """Not a message we take at all (answered AR)."""

    ack_code = "AR"


class MessageInvalid(HL7Error):
    """A message we take, but broken (answered AE)."""

    ack_code = "AE"


@dataclass(slots=True)
class ParsedMessage:
    """One ORU^R01 message: its header and what it reported."""

    control_id: str  # MSH-10
    sending_application: str  # MSH-3, first component
    sending_facility: str  # MSH-4, first component ("" when not sent)
    receiving_application: str
    receiving_facility: str
    message_type: str  # "ORU^R01"
    version: str  # MSH-12, "2.5.1"
    processing_id: str  # MSH-11: P production, T training, D debugging
    sent_at: datetime | None  # MSH-7, UTC
    charset: str  # MSH-18 as sent ("" when absent)
    msh: str  # the MSH segment as sent: enough to acknowledge it
    parsed: Parsed = field(default_factory=Parsed)

    @property
    def sender(self) -> str:
        """Who sent it: the facility, or the application when the facility is blank."""
        return self.sending_facility or self.sending_application

    @property
    def message_id(self) -> str:
        """Unique per sender and message; a resent message carries the same id."""
        return f"{self.sender}|{self.control_id}"


@dataclass(frozen=True, slots=True)
class _Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


Segment = list[str]  # raw (still escaped) fields; [0] is the segment id, [n] is field n


# -- text helpers --------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Segments separated by CR, blank lines and a leading byte-order mark removed."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return "\r".join(line for line in lines if line.strip())


def split_messages(text: str) -> list[str]:
    """Split a file holding one or more messages; batch envelopes (FHS/BHS/BTS/FTS) dropped.

    Anything before the first MSH is returned as a message of its own, so that it is
    refused loudly rather than lost.
    """
    messages: list[list[str]] = []
    for line in filter(None, normalize(text).split("\r")):
        if line[:3] in ("FHS", "BHS", "BTS", "FTS"):
            continue
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return ["\r".join(lines) for lines in messages if lines]


def _field(segment: Segment, n: int) -> str:
    return segment[n] if n < len(segment) else ""


def _components(raw: str, seps: _Separators) -> list[str]:
    """The components of a field's first repetition, still escaped."""
    return raw.split(seps.repetition, 1)[0].split(seps.component)


def _component(segment: Segment, n: int, c: int, seps: _Separators) -> str:
    parts = _components(_field(segment, n), seps)
    return unescape(parts[c - 1], seps) if c <= len(parts) else ""


def unescape(text: str, seps: _Separators | None = None) -> str:
    r"""Resolve HL7 escapes: \F\ \S\ \T\ \R\ \E\, \Xhh..\ and \.br\; formatting is dropped."""
    seps = seps or _Separators()
    esc = seps.escape
    if esc not in text:
        return text
    known = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": esc,
        ".br": "\n",
    }
    out, i = [], 0
    while i < len(text):
        end = text.find(esc, i + 1) if text[i] == esc else -1
        if end == -1:
            out.append(text[i])
            i += 1
            continue
        out.append(known.get(text[i + 1 : end], _hex_or_drop(text[i + 1 : end])))
        i = end + 1
    return "".join(out)


def _hex_or_drop(sequence: str) -> str:
    """\\Xhh..\\ as latin-1 characters; other sequences (\\H\\, \\N\\, \\.sp\\ ...) vanish."""
    if sequence.startswith("X") and len(sequence) % 2 == 1:
        try:
            return bytes.fromhex(sequence[1:]).decode("latin-1")
        except ValueError:
            return ""
    return ""


def _escape(text: str, seps: _Separators, limit: int) -> str:
    text = _CONTROL.sub(" ", text)[:limit]
    e = seps.escape
    out = text.replace(e, f"{e}E{e}")
    for char, code in (
        (seps.field, "F"),
        (seps.component, "S"),
        (seps.subcomponent, "T"),
        (seps.repetition, "R"),
    ):
        out = out.replace(char, f"{e}{code}{e}")
    return out


# -- values ----------------------------------------------------------------------------------


def parse_ts(raw: str, default_tz: tzinfo = UTC) -> datetime | None:
    """An HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as aware UTC; None if invalid.

    Without an offset the time is read in `default_tz` (see the module notes).
    """
    match = _TS.match(raw.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, oh, om = match.groups()
    if fraction and second is None:
        return None
    try:
        zone = _offset(sign, oh, om) if sign else default_tz
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=zone,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _offset(sign: str, hours: str, minutes: str) -> tzinfo:
    if int(minutes) >= 60:
        raise ValueError("offset minutes out of range")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def _birth_date(raw: str) -> date | None:
    match = _TS.match(raw.strip())
    if match is None or match.group(3) is None:  # a birth date needs a day
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _number(text: str) -> tuple[float | None, str | None]:
    """("4.06" → 4.06, None), ("<5" → 5.0, "<"); anything else → (None, None)."""
    match = _NUMBER.match(text)
    if match is None:
        return None, None
    value = float(match.group(2))
    if not math.isfinite(value):
        return None, None
    return value, (match.group(1) if match.group(1) not in (None, "=") else None)


def _structured_numeric(raw: str, seps: _Separators) -> tuple[float | None, str | None]:
    """SN: comparator^num1^separator/suffix^num2. Only a plain (bounded) number is a value."""
    parts = _components(raw, seps)
    if len(parts) == 1:
        return _number(unescape(raw, seps))
    comparator, number, *rest = parts
    if comparator not in _SN_COMPARATORS or any(rest) or not _NUMBER.match(number):
        return None, None
    value, _ = _number(number)
    return value, (comparator if comparator not in ("", "=") else None)


def _value(value_type: str, raw: str, seps: _Separators) -> tuple[float | None, str, str | None]:
    """(value, value_text, comparator) for OBX-5 of type OBX-2."""
    if not raw:
        return None, "", None
    if value_type == "SN":
        value, comparator = _structured_numeric(raw, seps)
        return value, raw, comparator
    text = unescape(raw, seps)
    if value_type in _NUMERIC_TEXT_TYPES:
        value, comparator = _number(text)
        return value, text, comparator
    return None, text, None


def is_loinc(code: str) -> bool:
    """True for a well-formed LOINC code whose mod-10 check digit is right ("1554-5")."""
    if not _LOINC_CODE.match(code):
        return False
    body, check = code.split("-")
    total = 0
    for position, digit in enumerate(reversed(body)):
        doubled = int(digit) * (2 if position % 2 == 0 else 1)
        total += doubled // 10 + doubled % 10
    return (10 - total % 10) % 10 == int(check)


def _coding(raw: str, seps: _Separators) -> tuple[str, str, str | None]:
    """(system, code, display) from a CE/CWE: the LOINC triplet when either one is LOINC.

    A code sent with no coding system, or with text where the system belongs (the
    sample's "POST 12H CFST:MCNC:PT:SER/PLAS:QN"), is taken as LOINC when it is a valid
    LOINC code with the right check digit; otherwise the system is kept as sent.
    """
    parts = [unescape(p, seps).strip() for p in _components(raw, seps)] + [""] * 6
    primary, alternate = parts[0:3], parts[3:6]
    chosen = primary
    if (primary[2] != LOINC and alternate[2] == LOINC and alternate[0]) or not primary[0]:
        chosen = alternate
    code, display, system = chosen
    if not _CODING_SYSTEM.match(system) and is_loinc(code):
        system = LOINC
    return system, code, display or None


# -- parsing -------------------------------------------------------------------------------


def parse_message(text: str, *, default_tz: tzinfo = UTC) -> ParsedMessage:
    """Parse one ORU^R01 message; raises `MessageRejected` (AR) or `MessageInvalid` (AE)."""
    text = normalize(text)
    seps = _check_start(text)
    segments = _split(text, seps)
    try:
        message = _header(segments[0], seps, default_tz)
        _Reader(message, seps, default_tz).read(segments[1:])
    except HL7Error as error:
        error.control_id = _component(segments[0], 10, 1, seps).strip()
        raise
    return message


def _check_start(text: str) -> _Separators:
    if not text:
        raise MessageRejected("empty message", condition="100")
    if text[:3] in ("FHS", "BHS"):
        raise MessageRejected("a batch (FHS/BHS): send single messages", condition="100")
    if not text.startswith("MSH"):
        raise MessageRejected(f"no MSH header: message starts {text[:20]!r}", condition="100")
    seps = _read_separators(text.split("\r", 1)[0])
    if seps is None:
        raise MessageInvalid(
            "MSH-1/MSH-2 field separator and encoding characters are "
            "missing or invalid (truncated header?)",
            condition="102",
        )
    return seps


def _read_separators(msh: str) -> _Separators | None:
    """The separators an MSH segment declares, or None when they are not usable."""
    if len(msh) < 8 or not msh.startswith("MSH"):
        return None
    fs = msh[3]
    end = msh.find(fs, 4)
    chars = msh[4:end]
    if end == -1 or len(chars) not in (4, 5) or len(set(chars + fs)) != len(chars) + 1:
        return None
    if any(c.isalnum() or c.isspace() for c in chars + fs):
        return None
    return _Separators(fs, chars[0], chars[1], chars[2], chars[3])


def _split(text: str, seps: _Separators) -> list[Segment]:
    """Segments as lists of raw (still escaped) fields; [0] is the segment id.

    Fields are split into components only where they are read, so one split per segment
    is all that is needed here. (python-hl7 split every component and sub-component of
    every field: two thirds of the cost of an HL7 ingest, for objects turned straight back
    into strings. The tests hold this split to python-hl7's on generated messages.)
    """
    segments = []
    for n, line in enumerate(text.split("\r"), start=1):
        fields = line.split(seps.field)
        if fields[0] in _HEADERS:  # MSH-1 is the field separator itself
            fields.insert(1, seps.field)
        if not _SEGMENT_ID.match(fields[0]):
            raise MessageInvalid(
                f"segment {n} starts {fields[0][:12]!r}, not a segment "
                "name (unescaped line break?)",
                condition="100",
            )
        segments.append(fields)
    return segments


def _header(msh: Segment, seps: _Separators, default_tz: tzinfo) -> ParsedMessage:
    def comp(n: int, c: int = 1) -> str:
        return _component(msh, n, c, seps).strip()

    _check_type(comp(9, 1), comp(9, 2))
    version, processing = comp(12), comp(11)
    if not comp(10):
        raise MessageInvalid("MSH-10 message control id is empty", condition="101")
    if not version:
        raise MessageInvalid("MSH-12 version id is empty", condition="101")
    if not _VERSION.match(version):
        raise MessageRejected(
            f"HL7 version {version!r} is not supported (2.1 to 2.9)", condition="203"
        )
    if processing not in _PROCESSING_IDS:
        raise MessageRejected(f"processing id {processing!r} is not P, T or D", condition="202")
    return ParsedMessage(
        control_id=comp(10),
        sending_application=comp(3),
        sending_facility=comp(4),
        receiving_application=comp(5),
        receiving_facility=comp(6),
        message_type=f"{comp(9, 1)}^{comp(9, 2) or 'R01'}",
        version=version,
        processing_id=processing,
        sent_at=parse_ts(comp(7), default_tz),
        charset=comp(18),
        msh=seps.field.join(msh[:1] + msh[2:]),
    )


def _check_type(code: str, trigger: str) -> None:
    if not code:
        raise MessageInvalid("MSH-9 message type is empty (truncated header?)", condition="101")
    if code != "ORU":
        raise MessageRejected(f"message type {code}^{trigger} is not ORU^R01", condition="200")
    if trigger not in ("R01", ""):  # HL7 2.1/2.2 ORU messages carry no trigger event
        raise MessageRejected(f"event ORU^{trigger} is not ORU^R01", condition="201")


class _Reader:
    """Walks the segments after MSH, keeping track of the current patient, visit and order."""

    def __init__(self, message: ParsedMessage, seps: _Separators, default_tz: tzinfo) -> None:
        self.message, self.seps, self.default_tz = message, seps, default_tz
        self.patient_id: str | None = None
        self.encounter_id: str | None = None
        self.encounters: dict[str, Encounter] = {}
        self.visit: Encounter | None = None  # the current patient's, added when complete
        self.obr: Segment | None = None
        self.patients = 0
        self.results = 0

    def read(self, segments: list[Segment]) -> None:
        actions: dict[str, Callable[[Segment], None]] = {
            "MSH": self._msh,
            "PID": self._pid,
            "PV1": self._pv1,
            "OBR": self._obr,
            "OBX": self._obx,
        }
        for segment in segments:
            actions.get(segment[0], _ignore)(segment)
        self._close_visit()
        if not self.patients:
            raise MessageInvalid("no PID segment (truncated message?)", condition="100")
        if self.obr is None:
            raise MessageInvalid("no OBR segment (truncated message?)", condition="100")
        self.message.parsed.encounters.extend(self.encounters.values())

    def _comp(self, segment: Segment, n: int, c: int = 1) -> str:
        return _component(segment, n, c, self.seps).strip()

    def _msh(self, segment: Segment) -> None:
        raise MessageInvalid("a second MSH segment: one message at a time", condition="100")

    def _pid(self, pid: Segment) -> None:
        patient_id = self._comp(pid, 3)
        if not patient_id:
            raise MessageInvalid("PID-3 patient identifier is empty", condition="101")
        self._close_visit()
        self.patients += 1
        self.patient_id, self.obr = patient_id, None
        self.encounter_id = self._comp(pid, 18) or None  # the account number, until a PV1
        if self.encounter_id:
            self.visit = Encounter(self.encounter_id, patient_id, source=SOURCE)
        patient = Patient(
            patient_id,
            _SEX.get(self._comp(pid, 8).upper(), Sex.UNKNOWN),
            self._birth_date(pid, patient_id),
            SOURCE,
        )
        if patient not in self.message.parsed.patients:
            self.message.parsed.patients.append(patient)

    def _birth_date(self, pid: Segment, patient_id: str) -> date | None:
        raw = self._comp(pid, 7)
        born = _birth_date(raw)
        if raw and born is None:
            m = self.message
            self.message.parsed.rejections.append(
                Rejection(
                    SOURCE,
                    f"{m.message_id}|PID{self.patients}-7",
                    "invalid_birth_date",
                    f"PID-7 birth date {raw!r} is not a valid YYYYMMDD date; the patient is "
                    "kept without a birth date. Ask the sender to correct the record.",
                    f"MSH-10={m.control_id} PID-3={patient_id} PID-7={raw}",
                    patient_id,
                )
            )
        return born

    def _pv1(self, pv1: Segment) -> None:
        if self.patient_id is None:
            raise MessageInvalid("PV1 before any PID", condition="100")
        self.encounter_id = self._comp(pv1, 19) or self.encounter_id
        if self.encounter_id:
            self.visit = Encounter(
                self.encounter_id,
                self.patient_id,
                unit=self._comp(pv1, 3) or None,
                admitted_at=parse_ts(self._comp(pv1, 44), self.default_tz),
                source=SOURCE,
            )

    def _close_visit(self) -> None:
        visit, self.visit = self.visit, None
        known = self.encounters.get(visit.encounter_id) if visit else None
        if visit and (known is None or visit.unit or visit.admitted_at):
            self.encounters[visit.encounter_id] = visit

    def _obr(self, obr: Segment) -> None:
        if self.patient_id is None:
            raise MessageInvalid("OBR before any PID (PID missing?)", condition="100")
        self.obr = obr

    def _obx(self, obx: Segment) -> None:
        if self.obr is None or self.patient_id is None:
            raise MessageInvalid("OBX outside an order (no OBR before it)", condition="100")
        self.results += 1
        source_id = f"{self.message.message_id}|{self.results}"
        payload = "\r".join(
            [self.message.msh, self.seps.field.join(self.obr), self.seps.field.join(obx)]
        )
        status = self._comp(obx, 11).upper()
        if status in _WITHDRAWN:
            self.message.parsed.rejections.append(
                Rejection(
                    SOURCE,
                    source_id,
                    "result_withdrawn",
                    _WITHDRAWN[status],
                    payload,
                    self.patient_id,
                )
            )
            return
        value, text, comparator = _value(self._comp(obx, 2).upper(), _field(obx, 5), self.seps)
        system, code, display = _coding(_field(obx, 3), self.seps)
        self.message.parsed.reported.append(
            Reported(
                patient_id=self.patient_id,
                encounter_id=self.encounter_id,
                system=system,
                code=code,
                display=display,
                value=value,
                value_text=text,
                comparator=comparator,
                unit=self._comp(obx, 6) or None,
                effective_at=self._time(obx, self.obr),
                source=SOURCE,
                source_id=source_id,
                payload=payload,
            )
        )

    def _time(self, obx: Segment, obr: Segment) -> datetime | None:
        """OBX-14, else OBR-7, else MSH-7: the first one sent (an invalid one gives None)."""
        for raw in (self._comp(obx, 14), self._comp(obr, 7)):
            if raw:
                return parse_ts(raw, self.default_tz)
        return self.message.sent_at


def _ignore(segment: Segment) -> None:
    """ORC, NTE, SPM, PD1, PV2, Z-segments ...: nothing we use."""


# -- acknowledgements ------------------------------------------------------------------------


def ack(
    parsed_or_raw: ParsedMessage | str,
    code: str,
    text: str = "",
    *,
    condition: str | None = None,
) -> str:
    """An original-mode HL7 ACK (segments separated by CR) for a parsed or raw message.

    Sender and receiver are swapped, MSA-2 echoes the control id (empty when the message is
    too broken to have one), and AE/AR carry an ERR segment with `condition` (HL7 table
    0357, default 207 application internal error) and `text`. Never fails on a bad message.
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"acknowledgement code must be AA, AE or AR, not {code!r}")
    msh = (
        parsed_or_raw.msh if isinstance(parsed_or_raw, ParsedMessage) else _find_msh(parsed_or_raw)
    )
    seps = _read_separators(msh) or _Separators()
    raw = [_CONTROL.sub("", f)[:200] for f in msh.split(seps.field)[1:]]  # never break framing
    old: Segment = ["MSH", seps.field, *raw]  # old[n] is MSH-n as sent
    version = _component(old, 12, 1, seps).strip()
    version = version if _VERSION.match(version) else "2.5"
    msa = ["MSA", code, _field(old, 10), _escape(text, seps, 80)]
    segments = [_ack_header(old, seps, version), seps.field.join(msa).rstrip(seps.field)]
    if code != "AA":
        segments.append(_err(version, seps, condition or "207", text))
    return "\r".join(segments)


def _ack_header(old: Segment, seps: _Separators, version: str) -> str:
    """MSH of the ACK: receiver and sender swapped, a new control id, MSH-11/12/18 echoed."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    ack_type = _ack_type(version, _component(old, 9, 2, seps), seps)
    fields = ["MSH", seps.encoding, *(_field(old, n) for n in (5, 6, 3, 4)), now, "", ack_type]
    fields += [uuid.uuid4().hex[:20], _field(old, 11) or "P", version]
    if _field(old, 18):
        fields += [""] * 5 + [_field(old, 18)]
    return seps.field.join(fields)


def error_ack(raw: str, error: HL7Error) -> str:
    """The AE or AR answer for a message that raised `error`."""
    return ack(raw, error.ack_code, error.reason, condition=error.condition)


def acknowledge(
    text: str, commit: Callable[[ParsedMessage], object], *, default_tz: tzinfo = UTC
) -> str:
    """Parse, hand the message to `commit`, and answer AA once `commit` has returned.

    `commit` must return only when the data is durable: that is the ack-after-commit
    guarantee. HL7Error and `commit`'s failures propagate; the MLLP server answers them.
    """
    message = parse_message(text, default_tz=default_tz)
    commit(message)
    return ack(message, "AA")


def _find_msh(raw: str) -> str:
    for line in normalize(raw).split("\r"):
        if line.startswith("MSH"):
            return line
    return ""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _ack_type(version: str, trigger: str, seps: _Separators) -> str:
    trigger = trigger if re.fullmatch(r"[A-Z0-9]{3}", trigger) else ""
    if not trigger:
        return "ACK"
    structure = _version_tuple(version) >= (2, 3, 1)
    return seps.component.join(["ACK", trigger, "ACK"] if structure else ["ACK", trigger])


def _err(version: str, seps: _Separators, condition: str, text: str) -> str:
    name = _escape(CONDITIONS.get(condition, ""), seps, 80)
    if _version_tuple(version) >= (2, 5):
        code = seps.component.join([condition, name, "HL70357"])
        return seps.field.join(["ERR", "", "", code, "E", "", "", "", _escape(text, seps, 250)])
    code = seps.subcomponent.join([condition, name, "HL70357"])
    return seps.field.join(["ERR", seps.component * 3 + code])
