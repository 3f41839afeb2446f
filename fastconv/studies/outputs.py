"""The files a study writes: NAME.json (every run), NAME.csv (the runs' scalar columns), NAME.md (the table)."""
import csv
import json
import os

__all__ = ["write_outputs"]


def write_outputs(out, name, rows, table_md, extra=None):
    """Write ``out/NAME.json`` (``{"runs": rows, **extra}``), ``out/NAME.csv`` and ``out/NAME.md`` (``table_md``).

    The CSV has one line per run and the columns of ``rows[0]`` that are not lists or dicts.
    """
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"runs": rows, **(extra or {})}, f, indent=1)
    scalar_keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=scalar_keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in scalar_keys})
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(table_md)
