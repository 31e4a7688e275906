"""``throughput serve`` and ``throughput new-key``; also ``python -m intake serve|new-key``.

``serve_main`` checks the configuration, the landing folder and the port, closes the files a
crash left open, then supervises N uvicorn worker processes (``intake.supervisor``), each with its
own open files: SIGHUP replaces them one by one, which re-reads the configuration; SIGTERM or
SIGINT closes every file into place and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

__all__ = ["key_main", "main", "serve_main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error to its caller instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


_N = TypeVar("_N", int, float)


def _number(convert: Callable[[str], _N], accept: Callable[[_N], bool], expected: str) -> Callable[[str], _N]:
    """An argparse type: the text converted, when ``accept`` takes it; else a usage error naming ``expected``."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not accept(value):  # NaN is not above 0 either
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda value: value >= 1, "a whole number above 0")
_positive_float = _number(float, lambda value: value > 0, "a number of seconds above 0")
_port = _number(int, lambda value: 0 <= value <= 65535, "a port number (0-65535)")


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def serve_parser(prog: str = "throughput serve") -> argparse.ArgumentParser:
    from intake.settings import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILE_SECONDS

    parser = _Parser(prog=prog, description=(
        "Receive task_completed API calls (the Throughput API) and land the accepted bodies as JSON-lines files under "
        "--landing for `throughput run --input 'DIR/**/*.jsonl'`."))
    parser.add_argument("--landing", required=True, metavar="DIR", help="landing folder (local file system)")
    parser.add_argument("--workstreams", required=True, metavar="FILE",
                        help="workstream configuration (JSON or YAML) with each workstream's api_key_sha256 list")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8080, help="port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=_positive_int, default=_default_workers(), metavar="N",
                        help="worker processes (default: the number of CPUs, at most 8: %(default)s)")
    parser.add_argument("--max-file-bytes", type=_positive_int, default=DEFAULT_MAX_FILE_BYTES, metavar="N",
                        help="close a landing file once it holds this many bytes (default: %(default)s)")
    parser.add_argument("--max-file-seconds", type=_positive_float, default=DEFAULT_MAX_FILE_SECONDS, metavar="S",
                        help="close a landing file this long after it was opened (default: %(default)s)")
    parser.add_argument("--access-log", default="-", metavar="PATH",
                        help="JSON access log: '-' for standard error, a file, or 'off' (default: %(default)s)")
    return parser


def serve_main(argv: Sequence[str]) -> int:
    """``throughput serve``: 0 after a clean shutdown, 1 when it cannot start, 2 on a usage error."""
    parser = serve_parser()
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as exc:
        print(f"{parser.prog}: {exc}\nusage: {parser.format_usage().partition(': ')[2].strip()}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    from intake.keys import KeyRing
    from intake.landing import LandingLayout, recover_all
    from intake.logs import setup_logging
    from intake.settings import ENVIRONMENT_VARIABLE, Settings, read_workstreams
    from intake.supervisor import Supervisor, bind_probe
    from schemas.config import ConfigError

    setup_logging()
    log = logging.getLogger("throughput.intake")
    try:
        config = read_workstreams(args.workstreams)
    except ConfigError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for workstream in KeyRing.from_config(config).workstreams_without_keys():
        log.warning("workstream %r lists no api_key_sha256: every call to it gets 401", workstream)
    try:
        port = bind_probe(args.host, args.port)
    except OSError as exc:
        print(f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.access_log not in ("-", "off"):
        try:
            with open(args.access_log, "ab"):
                pass
        except OSError as exc:
            print(f"{parser.prog}: cannot write the access log {args.access_log}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        args.access_log = os.path.abspath(args.access_log)
    layout = LandingLayout(args.landing)
    try:
        layout.prepare()
        recovered = recover_all(layout)
    except OSError as exc:
        print(f"{parser.prog}: cannot use the landing folder {layout.root}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if recovered:
        log.info("closed %d landing file(s) left open by an earlier server", len(recovered))

    settings = Settings(landing=str(layout.root), workstreams=os.path.abspath(args.workstreams),
                        max_file_bytes=args.max_file_bytes, max_file_seconds=args.max_file_seconds,
                        access_log=args.access_log, supervisor_pid=os.getpid())
    os.environ[ENVIRONMENT_VARIABLE] = settings.to_environment()
    log.info("serving http://%s:%d with %d worker(s); landing %s", args.host, port, args.workers, layout.root)
    supervisor = Supervisor(args.host, port, args.workers)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return supervisor.run()
    # Every worker counts into files of this folder, and /metrics sums them.
    with tempfile.TemporaryDirectory(prefix="throughput-intake-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        return supervisor.run()


def key_main(argv: Sequence[str]) -> int:
    """``throughput new-key --workstream ID``: a new key, shown once, and the digest to configure."""
    parser = _Parser(prog="throughput new-key", description=(
        "Make a new random API key for a workstream. The key is printed once and stored nowhere: give it to "
        "the client. Add the printed digest to the workstream's api_key_sha256 list in the configuration."))
    parser.add_argument("--workstream", required=True, metavar="ID", help="the workstream the key is for")
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as exc:
        print(f"{parser.prog}: {exc}\nusage: {parser.format_usage().partition(': ')[2].strip()}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    from intake.keys import digest, new_key

    key = new_key()
    print(f"API key for workstream {args.workstream} (shown once, stored nowhere; give it to the client):")
    print(f"  {key}")
    print(f"Add this digest to the api_key_sha256 list of workstream {args.workstream} in the configuration:")
    print(f"  {digest(key)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m intake serve ...`` / ``python -m intake new-key ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve": serve_main, "new-key": key_main}
    if not args or args[0] not in commands:
        print("usage: python -m intake {serve,new-key} [options]  (--help after a command lists its options)",
              file=sys.stderr)
        return EXIT_USAGE
    return commands[args[0]](args[1:])
