"""The one-pass reading of usual Observations accepts only what the long way accepts, as it does.

`fhir_usual.usual_rows` may decline anything (the long way then reads it); what it accepts must
be exactly the row `fhir._observation` gives and never something the long way quarantines.
"""

from __future__ import annotations

import copy
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wardwatch.ingest import fhir, fhir_usual
from wardwatch.ingest.fhir import FHIRParseResult, _Context, _Invalid

USUAL = {
    "resourceType": "Observation",
    "id": "obs-1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
        "text": "Heart rate",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "effectiveDateTime": "2024-03-01T10:15:00+01:00",
    "issued": "2024-03-01T10:20:00.000+01:00",
    "valueQuantity": {
        "value": 112.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}

# Values each element might hold in a sender's file: right, wrong in type, blank, absent.
TEXTS = st.sampled_from(["8867-4", "2345-7", "x y", " lead", "", "   ", "a  b", "LOCAL-9"])
ODD = st.sampled_from([None, 7, 7.5, True, [], {}, ["8867-4"], {"a": 1}])
TEXTISH = st.one_of(TEXTS, ODD)
SYSTEMS = st.one_of(
    st.sampled_from(
        ["http://loinc.org", "http://unitsofmeasure.org", "urn:oid:1.2.3", "", "http://loinc.org "]
    ),
    ODD,
)
CODINGS = st.lists(
    st.fixed_dictionaries({}, optional={"system": SYSTEMS, "code": TEXTISH, "display": TEXTISH}),
    max_size=3,
)
MOMENTS = st.one_of(
    st.sampled_from(
        [
            "2024-03-01T10:15:00Z",
            "2024-03-01",
            "2024-03",
            "2024-02-30T10:00:00Z",
            "2024-03-01T10:15:00",
            "2024-03-01T25:00:00Z",
            "0001-01-01T00:00:00-14:00",
            "2024-03-01T10:15:00.123+14:00",
            "",
        ]
    ),
    ODD,
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([2**53, -(2**53), 2**53 - 1, 10**400]),
    ODD,
    st.just("112"),
)
REFERENCES = st.one_of(
    st.sampled_from(
        [
            "Patient/p1",
            "Patient/p2",
            "Encounter/e1",
            "Patient/",
            "urn:uuid:abc",
            "#contained",
            "  ",
            "http://x.org/fhir/Patient/p1",
        ]
    ),
    ODD,
)

MUTATIONS = {
    "id": st.one_of(st.sampled_from(["obs-2", "a b", "é", "x" * 70, ""]), ODD),
    "status": st.one_of(st.sampled_from([*sorted(fhir._OBSERVATION_STATUS), "done", "FINAL"]), ODD),
    "subject": st.one_of(st.builds(lambda r: {"reference": r}, REFERENCES), ODD),
    "encounter": st.one_of(
        st.builds(lambda r: {"reference": r}, REFERENCES),
        st.just({"identifier": {"value": "v1"}}),
        ODD,
    ),
    "code": st.one_of(st.builds(lambda c, t: {"coding": c, "text": t}, CODINGS, TEXTISH), ODD),
    "effectiveDateTime": MOMENTS,
    "issued": MOMENTS,
    "valueQuantity": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "value": NUMBERS,
                "unit": TEXTISH,
                "system": SYSTEMS,
                "code": TEXTISH,
                "comparator": st.sampled_from(["<", "<=", ">", ">=", "=", "", 5]),
            },
        ),
        ODD,
    ),
    "valueString": st.sampled_from(["high", None]),
    "effectivePeriod": st.just({"start": "2024-03-01T10:00:00Z"}),
    "dataAbsentReason": st.just({"text": "error"}),
    "component": st.just([]),
    "hasMember": st.just([{"reference": "Observation/o2"}]),
}


def context() -> _Context:
    """A document in which Patient/p1, Patient/p2 and Encounter/e1 were referred to before."""
    refs = {
        "Patient/p1": ("Patient", "p1"),
        "Patient/p2": ("Patient", "p2"),
        "Encounter/e1": ("Encounter", "e1"),
        "http://x.org/fhir/Patient/p1": ("Patient", "p1"),
        "Patient/": "is not a literal reference such as Patient/123",
    }
    return _Context({}, strict=False, refs=refs)


def the_long_way(resource: dict, key: str, text: str) -> list[tuple] | str:
    """The rows `fhir._observation` reads, or the reason it rejects the resource."""
    out = FHIRParseResult()
    try:
        fhir._observation(resource, key, context(), out, text)
    except _Invalid as bad:
        return bad.reason
    return out.rows


def same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal rows, NaN equal to NaN (a float field compared as itself)."""
    return len(a) == len(b) and all(
        len(x) == len(y)
        and all(
            u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v))
            for u, v in zip(x, y, strict=True)
        )
        for x, y in zip(a, b, strict=True)
    )


def test_the_usual_observation_is_read_in_one_pass_as_the_long_way_reads_it():
    text = json.dumps(USUAL)
    row = fhir_usual.usual_rows(copy.deepcopy(USUAL), "obs-1", context(), text)
    assert row is not None
    assert [row] == the_long_way(copy.deepcopy(USUAL), "obs-1", text)
    assert row[:4] == ("p1", "e1", "http://loinc.org", "8867-4") and row[5] == 112.0
    assert row[8] == "/min" and row[9].isoformat() == "2024-03-01T09:15:00+00:00"


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(MUTATIONS)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: MUTATIONS[k] for k in keys})
    ),
    st.sets(st.sampled_from(["id", "encounter", "issued", "code", "valueQuantity"]), max_size=2),
)
def test_what_the_one_pass_accepts_the_long_way_accepts_identically(changes, removed):
    resource = {**copy.deepcopy(USUAL), **changes}
    for name in removed:
        resource.pop(name, None)
    text = json.dumps(resource, default=str)
    row = fhir_usual.usual_rows(copy.deepcopy(resource), "k", context(), text)
    if row is None:
        return  # declined: the long way reads it (and its own tests say how)
    long_way = the_long_way(copy.deepcopy(resource), "k", text)
    assert not isinstance(long_way, str), f"the long way rejects what one pass accepted: {long_way}"
    assert same([row], long_way)


def test_a_whole_export_reads_the_same_with_and_without_the_one_pass(monkeypatch):
    from tests.ingest.test_bulk import bulk_export, ndjson

    export = bulk_export()
    content = ndjson(export["Patient"] + export["Encounter"] + export["Observation"])
    taken = []

    def counted(*args):
        row = usual(*args)
        taken.append(row is not None)
        return row

    usual = fhir_usual.usual_rows
    monkeypatch.setattr(fhir_usual, "usual_rows", counted)
    quick = fhir.parse_ndjson(content.splitlines(), rows=True)
    monkeypatch.setattr(fhir_usual, "usual_rows", lambda *args: None)
    slow = fhir.parse_ndjson(content.splitlines(), rows=True)
    assert sum(taken) > 0.8 * len(export["Observation"])  # the one pass is the common way
    assert quick.rows == slow.rows and quick.lines == slow.lines
    assert quick.parsed.rejections == slow.parsed.rejections
