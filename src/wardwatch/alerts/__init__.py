"""Alerts: when to fire (`policy`), what clinicians do with one (`workflow`), and what a
policy would have done on a past cohort (`burden`)."""
