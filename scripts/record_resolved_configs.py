"""Record the resolved settings of config files into a JSON fixture.

```
python scripts/record_resolved_configs.py configs/*.yaml --out tests/data/resolved_configs.json
```
Each file is loaded with :meth:`gnn_inn.config.Config.load` (defaults filled in, overrides
none) and stored under its file name as :meth:`Config.to_dict` returns it, one config per line,
keys sorted, strict JSON. ``tests/data/resolved_configs.json`` holds the settings of every file
that ``configs/`` had before the configs were split into ``data/``, ``model/`` and ``train/``
pieces; ``tests/test_config_compose.py`` checks that ``configs/former.yaml`` still resolves each
of them to exactly these settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gnn_inn.config import Config


def record(paths: list[Path]) -> str:
    """Strict JSON text ``{file name: resolved config dict}``, one entry per line."""
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise SystemExit("two config files share a name; record them separately")
    lines = []
    for p in sorted(paths, key=lambda p: p.name):
        resolved = Config.load(p).to_dict()
        body = json.dumps(resolved, sort_keys=True, separators=(",", ":"), allow_nan=False)
        lines.append(f"{json.dumps(p.name)}:{body}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    text = record(args.configs)
    json.loads(text)  # strict JSON, checked before writing
    args.out.write_text(text, encoding="utf-8")
    print(f"{len(args.configs)} configs -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
