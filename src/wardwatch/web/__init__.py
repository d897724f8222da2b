"""The clinician's screen and the EHR's door: pages (Jinja2 + htmx), JSON API, CDS Hooks, FHIR."""
