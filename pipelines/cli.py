"""The ``throughput`` command: ``throughput run ...`` (SPEC 6)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipelines import run

__all__ = ["main"]

_COMMANDS = {"run": run.main}
_USAGE = "usage: throughput run --input PATTERN --output DIR --workstreams FILE [options] [beam options]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        print("  throughput run --help   lists the options")
        return 0 if args else 2
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"throughput: unknown command {args[0]!r}\n{_USAGE}", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
