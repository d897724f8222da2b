"""`python -m wardwatch` is the `wardwatch` command."""

from wardwatch.cli import app

app(prog_name="wardwatch")
