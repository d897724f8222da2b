"""Record `wardwatch demo`'s ward view as the README's screenshot (docs/demo.svg).

python scripts/readme_screenshot.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from wardwatch.demo import fresh_pipeline, ingest_samples
from wardwatch.ward import show_ward

OUT = Path(__file__).resolve().parents[1] / "docs" / "demo.svg"


def main() -> None:
    quiet = Console(quiet=True)
    console = Console(record=True, width=150)
    with tempfile.TemporaryDirectory() as home:
        pipeline = fresh_pipeline(Path(home))
        ingest_samples(pipeline, quiet)
        show_ward(pipeline.engine, console)
    OUT.write_text(console.export_svg(title="wardwatch demo — ICU worklist"))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
