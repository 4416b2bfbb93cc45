"""Print (or write into README.md) the table of what trains with what.

The table is generated from the components' capability flags by
:func:`gnn_inn.training.capabilities.combination_table`; a test checks that README.md holds
exactly this output.

    python scripts/combination_table.py            # print it
    python scripts/combination_table.py --write    # replace the README's table
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gnn_inn.training.capabilities import combination_table

START, END = "<!-- combination-table:start -->", "<!-- combination-table:end -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the table in README.md")
    ap.add_argument("--readme", default=str(Path(__file__).resolve().parents[1] / "README.md"))
    args = ap.parse_args()
    table = combination_table()
    if not args.write:
        print(table, end="")
        return
    path = Path(args.readme)
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{path}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")
    print(f"wrote the table into {path}")


if __name__ == "__main__":
    main()
