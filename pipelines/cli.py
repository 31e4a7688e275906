"""The ``throughput`` command: ``run`` (SPEC 6), ``backfill`` and ``compact``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

# Importing Beam logs a warning about Google Cloud client libraries that a local run never
# uses; keep it off the operator's screen (main() sets up logging for our own messages).
logging.getLogger().setLevel(logging.ERROR)

from pipelines import maintenance, run  # noqa: E402 - after quieting Beam's import-time warning

__all__ = ["main"]

_COMMANDS = {"run": run.main, "backfill": maintenance.backfill_main, "compact": maintenance.compact_main}
_USAGE = """usage: throughput run --input PATTERN --output DIR --workstreams FILE [options] [beam options]
       throughput backfill --input PATTERN --output DIR --workstreams FILE [--chunk-bytes N] [options]
       throughput compact --output DIR [--table task_completed|throughput_daily|all]"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        print("  throughput <command> --help   lists a command's options")
        return 0 if args else 2
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"throughput: unknown command {args[0]!r}\n{_USAGE}", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
