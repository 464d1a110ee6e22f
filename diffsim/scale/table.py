"""A sweep's results: one row per trial, without pandas (`to_pandas()` gives a DataFrame where pandas is installed)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator

from .trial import COLUMNS


class SweepTable:
    """Rows (dicts) in trial order. Columns: index, the swept values (``values.NAME``), status ("ok" or
    "error"), final_loss and best_loss (the loss of a `run`; a fit's last accepted and best loss), iterations,
    wall_time_s (s), folder (the trial's outputs), stopped (why a fit ended), seed, worker (host:pid), error.

        table["best_loss"]     # one column as a list
        table.best()           # the row with the lowest best_loss
        table.to_pandas()      # a DataFrame
    """

    def __init__(self, rows: list[dict], names: list[str]):
        self.rows = sorted(rows, key=lambda r: r["index"])
        self.names = list(names)

    @property
    def columns(self) -> list[str]:
        return ["index", *(f"values.{n}" for n in self.names), *COLUMNS[1:]]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, column: str) -> list:
        return [row.get(column) for row in self.rows]

    def best(self) -> dict | None:
        """The finished trial with the lowest best_loss (None if none has a finite one)."""
        finite = [r for r in self.rows if r["status"] == "ok" and math.isfinite(r["best_loss"])]
        return min(finite, key=lambda r: r["best_loss"]) if finite else None

    def to_pandas(self):
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame(self.rows, columns=self.columns)

    def to_csv(self) -> str:
        """CSV text: list values (a vector parameter's) as JSON."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_cell(row.get(c, "")) for c in self.columns])
        return out.getvalue()

    def to_json(self) -> str:
        return json.dumps({"columns": self.columns, "rows": self.rows}, indent=1) + "\n"

    def __repr__(self) -> str:
        best = self.best()
        tail = f", best loss {best['best_loss']:.6g} (trial {best['index']})" if best else ""
        return f"SweepTable({len(self.rows)} trials{tail})"


def _cell(value) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)  # every bit (a CSV reader gets the same float back)
    return str(value)
