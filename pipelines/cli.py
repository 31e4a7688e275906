"""The ``throughput`` command: ``run``, ``backfill`` and ``compact`` (one line each in ``_COMMANDS``).

Parsing, printing, exit codes and logging live here; the jobs themselves are
``pipelines.run.run``, ``pipelines.maintenance.backfill`` and ``pipelines.maintenance.compact``,
imported (with Beam) only when a command runs, so ``throughput --help`` and ``--version`` are quick.

Every command that runs a job goes through ``_command``: parse our options (``--help`` stops
there), capture logging (``pipelines.logs``: our warnings on stderr, Beam's messages and every
traceback in a log file), refuse an option neither we nor Beam's ``PipelineOptions`` know, run,
and end in one of the exit codes below with a summary (``--json``: one JSON document on stdout).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import difflib
import functools
import gc
import importlib
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pipelines import logs

if TYPE_CHECKING:
    from pipelines.run import RunOptions, RunResult

__all__ = [
    "EXIT_COMMITTED", "EXIT_FAILED", "EXIT_FAILED_INPUTS", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE",
    "UsageError", "backfill_main", "compact_main", "format_summary", "main", "parse_args", "positive_int", "run_main",
]

EXIT_COMMITTED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED_INPUTS = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it
EXIT_TERMINATED = 143  # SIGTERM (Airflow stopping a task, a scheduler's timeout)

_EXIT_CODES = {
    EXIT_COMMITTED: "committed",
    EXIT_FAILED: "failed: nothing was committed by this run; the message names the log file",
    EXIT_USAGE: "bad command line (unknown option, missing or invalid value)",
    EXIT_FAILED_INPUTS: "committed, but some input files could not be read whole: they are named in the summary "
                        "and in the manifest's failed_inputs, left out of the ledger, and a later run takes them once fixed",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; 143 when stopped by SIGTERM): nothing was committed by this run",
}
_BACKFILL_EXIT_CODES = {
    EXIT_FAILED: "failed: the chunks committed before the failure stay committed, nothing of the failed chunk "
                 "is; run the same command again to resume. The message names the log file",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; 143 when stopped by SIGTERM): as for 1",
}
_BEAM_LINE = ("Beam: any Beam pipeline option, e.g. --runner DataflowRunner --project P --region R, "
              "or --direct_num_workers 2, goes to Beam; without --runner the pipeline runs in this process.")
_LOG_LINE = ("Logs: Beam's messages and full tracebacks go to a log file, throughput-<time>-<pid>.log in "
             "$XDG_STATE_HOME/throughput (default ~/.local/state/throughput; the temp folder if that is not "
             "writable); a failure names it. -v shows them here too.")
_INTERRUPTED = "nothing was committed by this run (the next run finishes or rolls back any interrupted commit)"
_LOG = logging.getLogger(logs.LOGGER)


class UsageError(Exception):
    """A bad command line: one line on stderr, exit 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: {message}")
        self.prog = prog
        self.message = message


# -- parsing -------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already says what happens without it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "(default" in text or "(required" in text:
            return text
        if action.nargs == 0 and action.default is False:
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``UsageError``) and required options checked late.

    Options marked with ``required()`` are checked by ``check_required`` after the leftovers were
    matched against Beam's options, so that ``--inptu x`` is reported as a misspelt option, not
    as a missing ``--input``.
    """

    def __init__(self, prog: str, usage: str, description: str, epilog: str) -> None:
        super().__init__(prog=prog, usage=usage, description=_wrap(description), epilog=epilog,
                         formatter_class=_HelpFormatter, allow_abbrev=False)
        self._required: list[argparse.Action] = []

    def required(self, *names: str, **kwargs: Any) -> argparse.Action:
        kwargs["help"] = f"{kwargs.get('help', '')} (required)".strip()
        action = self.add_argument(*names, **kwargs)
        self._required.append(action)
        return action

    def check_required(self, args: argparse.Namespace) -> None:
        missing = [a.option_strings[0] for a in self._required if getattr(args, a.dest) in (None, [])]
        if missing:
            self.error(f"missing {', '.join(missing)} (required; {self.prog} --help lists every option)")

    def option_names(self) -> list[str]:
        return [name for action in self._actions for name in action.option_strings if name.startswith("--")]

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, _plain(message))


def _plain(message: str) -> str:
    """argparse's ``argument --x: invalid choice`` without the word ``argument``."""
    return re.sub(r"^argument ", "", message)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0 (other commands' parsers use it too)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(text: str) -> int:
    """``268435456``, ``256M``, ``256MiB``, ``1GB``: K/M/G/T are powers of 1024."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    value = int(match[1]) * _UNITS[match[2].lower()] if match else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a size such as 268435456, 64MiB or 1GiB, got {text!r}")
    return value


def _epilog(codes: Sequence[int], meanings: dict[int, str] | None = None, beam: bool = True) -> str:
    """The end of a command's --help: how Beam options pass, where logs go, the exit codes
    (``meanings`` says what a code means for this command where it differs)."""
    paragraphs = [*([_BEAM_LINE] if beam else []), _LOG_LINE]
    return "\n\n".join([*(_wrap(p) for p in paragraphs), _exit_codes(codes, meanings)])


def _exit_codes(codes: Sequence[int], meanings: dict[int, str] | None = None) -> str:
    said = {**_EXIT_CODES, **(meanings or {})}
    return "\n".join(["Exit codes:", *(_wrap(f"  {code:<4} {said[code]}", indent=7) for code in codes)])


def _wrap(text: str, indent: int = 0) -> str:
    import textwrap

    return textwrap.fill(text, width=100, subsequent_indent=" " * indent)


def _add_output_options(parser: _Parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON document on stdout (the human summary goes to stderr)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Beam's messages and full tracebacks on stderr too (they always go to the log file)")


def _run_id(text: str) -> str:
    """``--run-id``: a name, not a path (checked where the output's layout lives)."""
    from transforms.layout import check_run_id

    try:
        return check_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--run-id ")) from None


def _run_parser(prog: str, chunked: bool = False) -> _Parser:
    with _quiet_import():
        from transforms.dedupe import DUPLICATE_POLICIES
    parser = _Parser(
        prog,
        usage=f"{prog} --input PATTERN [--input PATTERN ...] --output DIR --workstreams FILE "
              + ("[--chunk-bytes SIZE] " if chunked else "") + "[options] [Beam pipeline options]",
        description=(
            "Read task_completed files (JSON lines or CSV), validate and deduplicate their records, and commit "
            "them to the Parquet tables in --output; every bad record goes to the rejects table with a reason. "
            "Files already ingested unchanged are skipped. Ends with a summary of the counts."
            if not chunked else
            "Ingest many task_completed files as a sequence of runs: the inputs, in file order, are cut into "
            "chunks of about --chunk-bytes, and each chunk is committed as a run before the next starts. "
            "After a failure or an interruption, run the same command again: committed files are skipped."),
        epilog=_epilog([EXIT_COMMITTED, EXIT_FAILED, EXIT_USAGE, EXIT_FAILED_INPUTS, EXIT_INTERRUPTED],
                       _BACKFILL_EXIT_CODES if chunked else None),
    )
    parser.required("--input", dest="inputs", action="append", metavar="PATTERN",
                    help="input file or glob, local, gs:// or s3:// (* within a folder, ** across folders); repeatable")
    parser.required("--output", metavar="DIR", help="the folder of the tables (local, gs://, s3://)")
    parser.required("--workstreams", metavar="FILE", help="workstream configuration, JSON or YAML (by extension)")
    parser.add_argument("--workstream-id", metavar="ID",
                        help="workstream of records that name none, in the record or as a workstream_id=<id> folder "
                             "of their path (default: none: such records are rejected as missing_workstream_id)")
    parser.add_argument("--format", dest="file_format", choices=("auto", "jsonl", "csv"), default="auto",
                        help="input format; auto goes by extension (.jsonl/.json/.ndjson or .csv, optionally .gz)")
    parser.add_argument("--timezone", default="UTC", metavar="TZ",
                        help="time zone (IANA name) of datetimes written without an offset")
    parser.add_argument("--duplicates", choices=DUPLICATE_POLICIES, default=DUPLICATE_POLICIES[0],
                        help="records with the key of an earlier one: per-record follows each record's "
                             "replace_duplicate (absent means true), replace replaces always, keep-first never")
    parser.add_argument("--run-id", type=_run_id, metavar="ID",
                        help="name of the run: letters, digits, '.', '_', '-' (default: the UTC start time and six "
                             "random hex digits, e.g. 20261128T020000Z-3fa9c1"
                             + ("; a backfill adds -chunkNNNN" if chunked else "") + ")")
    parser.add_argument("--max-reject-rate", type=_fraction, metavar="FRACTION",
                        help="fail the run, committing nothing, when rejected/read is above this "
                             "(default: no limit)")
    parser.add_argument("--max-record-bytes", type=positive_int, default=1 << 20, metavar="N",
                        help="a record (line or CSV row) longer than this is rejected as record_too_large")
    parser.add_argument("--reprocess", action="store_true",
                        help="ingest files again even if the ledger has them unchanged; their earlier rows are replaced")
    parser.add_argument("--chunk-records", type=positive_int, default=20_000, metavar="N",
                        help="records per batch between the pipeline's stages")
    if chunked:
        parser.add_argument("--chunk-bytes", type=_size, default="256MiB", metavar="SIZE",
                            help="input bytes per committed chunk, e.g. 64MiB or 1GiB; a larger file is a chunk alone")
    _add_output_options(parser)
    return parser


def _compact_parser(prog: str) -> _Parser:
    with _quiet_import():
        from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY
    parser = _Parser(
        prog,
        usage=f"{prog} --output DIR [--table NAME] [options] [Beam pipeline options]",
        description="Rewrite each partition of the tables that holds several files (one per nightly run) into one "
                    "sorted file, through the same commit as a run. No row changes.",
        epilog=_epilog([EXIT_COMMITTED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED]),
    )
    parser.required("--output", metavar="DIR", help="the folder of the tables (local, gs://, s3://)")
    parser.add_argument("--table", choices=(TASK_COMPLETED.name, THROUGHPUT_DAILY.name, "all"), default="all",
                        help="the table to compact")
    _add_output_options(parser)
    return parser


def _beam_options(rest: Sequence[str], parser: _Parser) -> list[str]:
    """``rest`` unchanged if Beam's PipelineOptions knows every option in it; else a ``UsageError``.

    Beam's own parser is the one ``PipelineOptions.get_all_options`` builds from every
    ``PipelineOptions`` subclass loaded (``add_extra_args_fn`` hands it to us), so an option of a
    runner or filesystem Beam has loaded is known as Beam knows it.
    """
    if not rest:
        return []
    from apache_beam.options.pipeline_options import PipelineOptions

    captured: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    beam = captured[0]
    beam.exit_on_error = False
    try:
        _, unknown = beam.parse_known_args(list(rest))
    except argparse.ArgumentError as exc:
        raise UsageError(parser.prog, _plain(str(exc))) from None
    for arg in unknown:
        if arg.startswith("-") and not re.fullmatch(r"-\d[\d.]*", arg):
            name = arg.split("=", 1)[0]
            beam_names = [n for action in beam._actions for n in action.option_strings if n.startswith("--")]
            raise UsageError(parser.prog, f"unknown option {name}{_suggest(name, parser.option_names(), beam_names)}")
    if unknown:
        raise UsageError(parser.prog, f"unexpected argument {unknown[0]!r} (every value follows its option)")
    return list(rest)


def _suggest(name: str, ours: Sequence[str], beams: Sequence[str]) -> str:
    """`` (did you mean --x?)``: ours first, with ``_`` and ``-`` taken as the same."""
    def key(option: str) -> str:
        return option.replace("_", "-").lower()

    same = [option for option in [*ours, *beams] if key(option) == key(name)]
    close = (same or difflib.get_close_matches(name, ours, n=1, cutoff=0.7)
             or difflib.get_close_matches(name, beams, n=1, cutoff=0.7))
    return f" (did you mean {close[0]}?)" if close else ""


def parse_args(argv: Sequence[str] | None = None, prog: str = "throughput run") -> tuple[RunOptions, list[str]]:
    """Our typed options, and the rest for Beam's PipelineOptions; a ``UsageError`` for a bad command line."""
    parser = _run_parser(prog, chunked="backfill" in prog)
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    beam_args = _beam_options(rest, parser)
    parser.check_required(args)
    return _run_options(args), beam_args


def _run_options(args: argparse.Namespace) -> RunOptions:
    from pipelines.run import RunOptions

    values = {f.name: getattr(args, f.name) for f in fields(RunOptions) if hasattr(args, f.name)}
    return RunOptions(**{**values, "inputs": tuple(args.inputs)})


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Importing Beam logs a warning about Google Cloud client libraries a local run never uses,
    through ``logging.warning``, which would install a handler printing to stderr; a handler
    that drops it keeps it (and that handler) off the screen of ``--help``."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    drop = logging.NullHandler()
    root.addHandler(drop)
    try:
        yield
    finally:
        root.removeHandler(drop)


# -- running -------------------------------------------------------------------------------


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the command ends as cleanly as on Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Session:
    """One command being run: where its human output goes, its JSON document, how it fails."""

    prog: str
    json: bool = False
    log: logs.LogFile | None = None
    started: float = field(default_factory=time.monotonic)
    document: dict[str, Any] = field(default_factory=dict)
    interrupted: str = _INTERRUPTED
    stdout: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def human(self) -> TextIO:
        """Where the human summary goes: stdout, or stderr when stdout carries the JSON."""
        return sys.stderr if self.json else self.stdout

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        print(text, file=self.human, flush=True)

    def finish(self, code: int, **values: Any) -> int:
        if self.json:
            document = {**self.document, "exit_code": code, "elapsed_seconds": round(self.elapsed, 3),
                        "log_file": str(self.log.path) if self.log else None, **values}
            print(json.dumps(document, default=str), file=self.stdout, flush=True)
        return code

    def fail(self, code: int, message: str, error: BaseException | None = None, **values: Any) -> int:
        """One line on stderr (naming the log file), the details in the log file, the JSON document."""
        line = _one_line(message)
        if error is not None:
            logs.detail(_LOG, "%s", message, exc_info=True)
            if self.log is not None:
                line += f" (details in {self.log.path})"
        print(f"{logs.LOGGER}: {line}", file=sys.stderr, flush=True)
        values.setdefault("status", "failed")
        values.setdefault("error", _one_line(message))
        if error is not None:
            values.setdefault("error_type", type(error).__name__)
        return self.finish(code, **values)


def _one_line(message: str) -> str:
    """A message that may hold a traceback (a pipeline's error), as its first and last lines."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


Body = Callable[[argparse.Namespace, list[str], _Session], int]


def _command(prog: str, build: Callable[[str], _Parser], argv: Sequence[str], body: Body) -> int:
    """Parse, capture logging, check the options left for Beam, run ``body``; every ending is one exit code."""
    _quick_exit()
    argv = list(argv)
    session = _Session(prog, json="--json" in argv)
    session.document["command"] = prog.split()[-1]
    try:
        parser = build(prog)
        args, rest = parser.parse_known_args(argv)
    except UsageError as exc:
        return _usage_error(session, exc)
    session.json = args.json
    with logs.capture(args.verbose) as log, _sigterm_raises():
        session.log = log
        try:
            beam_args = _beam_options(rest, parser)
            parser.check_required(args)
            with contextlib.redirect_stdout(sys.stderr) if session.json else contextlib.nullcontext():
                return body(args, beam_args, session)
        except UsageError as exc:
            return _usage_error(session, exc)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, _Terminated)
            logs.detail(_LOG, "%s", "terminated (SIGTERM)" if terminated else "interrupted")
            what = "terminated" if terminated else "interrupted"
            return session.fail(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED, f"{what}; {session.interrupted}")
        except Exception as exc:  # a bug or an error no layer named: one line, the traceback in the log
            return session.fail(EXIT_FAILED, f"unexpected error: {type(exc).__name__}: {exc}", exc)


@functools.cache  # once per process
def _quick_exit() -> None:
    """At exit, freeze what the collector tracks before the interpreter tears down.

    Shutting down walks every object Beam, pyarrow and the run left, collection after collection:
    0.3 s of a 1M-record run, after its commit, spent before the shell got its exit status.
    Frozen, they are still freed by their reference counts; only cyclic garbage is left to the
    process's end, which the operating system reclaims anyway.
    """
    atexit.register(gc.freeze)


def _usage_error(session: _Session, error: UsageError) -> int:
    print(str(error), file=sys.stderr, flush=True)
    return session.finish(EXIT_USAGE, status="failed", error=error.message, error_type="UsageError", log_file=None)


def run_main(argv: Sequence[str] | None = None) -> int:
    """``throughput run``: exit 0 committed, 1 failed, 2 usage, 3 committed with failed inputs."""
    return _command("throughput run", _run_parser, sys.argv[1:] if argv is None else argv, _run)


def _run(args: argparse.Namespace, beam_args: list[str], session: _Session) -> int:
    from pipelines.commit import RunError
    from pipelines.progress import Reporter
    from pipelines.run import run

    options = _run_options(args)
    session.document.update(run_id=options.run_id, output=options.output)
    try:
        with Reporter("run") as reporter:
            result = run(options, beam_args, reporter)
    except RunError as exc:
        return session.fail(EXIT_FAILED, f"run failed: {exc}", exc)
    elapsed = session.elapsed
    session.say(format_summary(result, elapsed))
    document = _run_document(result, elapsed)
    return session.finish(document.pop("exit_code"), **document)


def backfill_main(argv: Sequence[str] | None = None) -> int:
    """``throughput backfill``: the options of ``run`` plus ``--chunk-bytes``; the exit codes of ``run``."""
    return _command("throughput backfill", lambda prog: _run_parser(prog, chunked=True),
                    sys.argv[1:] if argv is None else argv, _backfill)


def _backfill(args: argparse.Namespace, beam_args: list[str], session: _Session) -> int:
    from pipelines.commit import RunError
    from pipelines.maintenance import backfill
    from pipelines.progress import Reporter

    options = _run_options(args)
    chunks: list[dict[str, Any]] = []
    session.document.update(run_id=options.run_id, output=options.output, chunks=chunks)
    session.interrupted = f"nothing of the current chunk was committed; {_resume(chunks)}"
    last_commit = [time.monotonic()]
    reporter = Reporter("backfill")

    def on_chunk(number: int, total: int, result: RunResult) -> None:
        now = time.monotonic()
        elapsed, last_commit[0] = now - last_commit[0], now
        chunks.append({"chunk": number, **_run_document(result, elapsed)})
        session.document["chunks_total"] = total
        session.interrupted = f"nothing of the current chunk was committed; {_resume(chunks)}"
        reporter.chunk_committed(number, total)
        reporter.write(f"chunk {number}/{total}: {format_summary(result, elapsed)}", session.human)

    try:
        with reporter:
            backfill(options, beam_args, args.chunk_bytes, reporter, on_chunk)
    except RunError as exc:
        where = f" at chunk {reporter.chunk[0]}/{reporter.chunk[1]}" if reporter.chunk else ""
        return session.fail(EXIT_FAILED, f"backfill failed{where}: {exc}; {_resume(chunks)}", exc,
                            totals=_totals(chunks))
    elapsed = session.elapsed
    totals = _totals(chunks)
    failed = bool(totals["failed_inputs"])
    session.say(_format_totals(totals, len(chunks), options.output, elapsed))
    return session.finish(
        EXIT_FAILED_INPUTS if failed else EXIT_COMMITTED,
        status="committed_with_failed_inputs" if failed else "committed", totals=totals,
        records_per_second=_rate(totals["counts"].get("read", 0), elapsed))


def _resume(chunks: Sequence[dict[str, Any]]) -> str:
    done = f"the {len(chunks)} chunk(s) committed before stay committed; " if chunks else ""
    return done + "run the same command again to resume"


def compact_main(argv: Sequence[str] | None = None) -> int:
    """``throughput compact --output DIR [--table NAME]``: exit 0 committed, 1 failed, 2 usage."""
    return _command("throughput compact", _compact_parser, sys.argv[1:] if argv is None else argv, _compact)


def _compact(args: argparse.Namespace, beam_args: list[str], session: _Session) -> int:
    from pipelines.commit import RunError
    from pipelines.maintenance import compact
    from pipelines.progress import Reporter
    from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY

    tables = [t for t in (TASK_COMPLETED, THROUGHPUT_DAILY) if args.table in ("all", t.name)]
    session.document.update(output=args.output, tables=[t.name for t in tables])
    try:
        with Reporter("compact") as reporter:
            reporter("compacting")
            manifest = compact(args.output, tables, beam_args)
    except RunError as exc:
        return session.fail(EXIT_FAILED, f"compaction failed: {exc}", exc)
    elapsed = session.elapsed
    session.say(f"compaction {manifest['run_id']}: {manifest['partitions_compacted']} partition(s), "
                f"{manifest['files_retired']} file(s) merged, {manifest['rows']} rows unchanged, "
                f"{_seconds(elapsed)}")
    return session.finish(EXIT_COMMITTED, run_id=manifest["run_id"], status=manifest.get("status", "committed"),
                          partitions_compacted=manifest["partitions_compacted"],
                          files_retired=manifest["files_retired"], rows=manifest["rows"])


# -- summaries -----------------------------------------------------------------------------


def _rate(records: int, seconds: float) -> float:
    return round(records / seconds, 1) if seconds > 0 else 0.0


def _per_second(records: int, seconds: float) -> str:
    rate = _rate(records, seconds)
    return f"{rate:,.0f} records/s" if rate >= 10 else f"{rate:.1f} records/s"


def _seconds(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s" if minutes else f"{rest:.1f} s"


def _run_document(result: RunResult, elapsed: float) -> dict[str, Any]:
    """A run's part of the JSON summary (and a backfill chunk's)."""
    manifest = result.manifest
    failed = result.failed_inputs
    return {
        "run_id": result.run_id,
        "status": "committed_with_failed_inputs" if failed else "committed",
        "exit_code": EXIT_FAILED_INPUTS if failed else EXIT_COMMITTED,
        "counts": manifest["counts"],
        "tables": manifest["tables"],
        "inputs": manifest["inputs"],
        "skipped_inputs": manifest["skipped_inputs"],
        "failed_inputs": failed,
        "manifest": result.manifest_path,
        "output": manifest["options"]["output"],
        "elapsed_seconds": round(elapsed, 3),
        "records_per_second": _rate(manifest["counts"]["read"], elapsed),
    }


def format_summary(result: RunResult, elapsed: float | None = None) -> str:
    """The few lines an operator reads at the end of a run."""
    manifest = result.manifest
    counts = manifest["counts"]
    tables = manifest["tables"]
    failed = result.failed_inputs
    status = f"committed with {len(failed)} failed input(s) (exit {EXIT_FAILED_INPUTS})" if failed else "committed"
    lines = [
        f"run {result.run_id}: {status}",
        f"  read {counts['read']}  written {counts['written']}  rejected {counts['rejected']}  "
        f"superseded {counts['superseded']}  ignored duplicates {counts['ignored_duplicates']}  "
        f"(blank lines {counts['blank_lines']})",
        f"  replaced rows of earlier runs {counts['replaced_existing']}",
    ]
    unchanged = [item for item in manifest["skipped_inputs"] if item["reason"] == "already ingested, unchanged"]
    if unchanged:
        lines.append(f"  skipped {len(unchanged)} file(s) already ingested unchanged (--reprocess to ingest them again)")
    for item in manifest["skipped_inputs"]:
        if item not in unchanged:
            lines.append(f"  skipped {item['path']}: {item['reason']}")
    replaced = [item["path"] for item in manifest["inputs"] if item.get("reprocessed")]
    removed = tables.get("task_completed", {}).get("rows_removed", 0)
    if replaced:
        lines.append(f"  {len(replaced)} changed or reprocessed file(s) replaced their earlier rows: "
                     f"{removed} row(s) removed, {counts['written']} written by this run")
    for item in failed:
        lines.append(f"  FAILED input {item['path']}: {item['reason']} (not committed; a later run takes it once fixed)")
    if counts["rejected_by_code"]:
        lines.append("  rejects: " + ", ".join(f"{code} {n}" for code, n in counts["rejected_by_code"].items()))
    if counts.get("reconciles") is False:
        lines.append("  COUNTS DO NOT RECONCILE: read != written + rejected + ignored duplicates + superseded")
    lines.append("  tables: " + ", ".join(f"{name} {t['rows']} rows" for name, t in tables.items()))
    files = (f"  files: {len(manifest['inputs'])} ingested, {len(manifest['skipped_inputs'])} skipped, "
             f"{len(failed)} failed")
    if elapsed is not None:
        files += f"  in {_seconds(elapsed)}, {_per_second(counts['read'], elapsed)}"
    lines.append(files)
    lines.append(f"  output: {manifest['options']['output']}  manifest: {result.manifest_path}")
    return "\n".join(lines)


def _totals(chunks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The counts of a backfill's committed chunks added up."""
    counts: dict[str, Any] = {}
    by_code: dict[str, int] = {}
    tables: dict[str, dict[str, int]] = {}
    for chunk in chunks:
        for key, value in chunk["counts"].items():
            if isinstance(value, int) and not isinstance(value, bool):
                counts[key] = counts.get(key, 0) + value
        for code, n in chunk["counts"].get("rejected_by_code", {}).items():
            by_code[code] = by_code.get(code, 0) + n
        for name, table in chunk["tables"].items():
            into = tables.setdefault(name, {})
            for key, value in table.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    into[key] = into.get(key, 0) + value
    counts["rejected_by_code"] = dict(sorted(by_code.items()))
    counts["reconciles"] = all(chunk["counts"].get("reconciles", True) for chunk in chunks)
    return {
        "chunks_committed": len(chunks),
        "counts": counts,
        "tables": tables,
        "inputs": sum(len(chunk["inputs"]) for chunk in chunks),
        "skipped_inputs": sum(len(chunk["skipped_inputs"]) for chunk in chunks),
        "failed_inputs": [item for chunk in chunks for item in chunk["failed_inputs"]],
    }


def _format_totals(totals: dict[str, Any], chunks: int, output: str, elapsed: float) -> str:
    counts = totals["counts"]
    lines = [
        f"backfill: {chunks} chunk(s) committed"
        + (f", {len(totals['failed_inputs'])} failed input(s) (exit {EXIT_FAILED_INPUTS})"
           if totals["failed_inputs"] else ""),
        f"  read {counts.get('read', 0)}  written {counts.get('written', 0)}  rejected {counts.get('rejected', 0)}  "
        f"superseded {counts.get('superseded', 0)}  ignored duplicates {counts.get('ignored_duplicates', 0)}  "
        f"(blank lines {counts.get('blank_lines', 0)})",
        f"  files: {totals['inputs']} ingested, {totals['skipped_inputs']} skipped, {len(totals['failed_inputs'])} "
        f"failed  in {_seconds(elapsed)}, {_per_second(counts.get('read', 0), elapsed)}",
        f"  output: {output}",
    ]
    if not counts["reconciles"]:
        lines.insert(2, "  COUNTS DO NOT RECONCILE in some chunk: see its manifest")
    return "\n".join(lines)


# -- the command table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    main: Callable[[Sequence[str]], int]
    summary: str


def _lazy(module: str, name: str) -> Callable[[Sequence[str]], int]:
    """A command's entry point, imported only when the command runs (keeps ``--help`` fast)."""

    def main(argv: Sequence[str]) -> int:
        with _quiet_import():
            entry = getattr(importlib.import_module(module), name)
        return int(entry(argv))

    return main


_COMMANDS: dict[str, Command] = {
    "run": Command(run_main, "ingest task_completed files: validate, deduplicate, commit to the tables"),
    "backfill": Command(backfill_main, "ingest many files as a sequence of committed runs (resumable)"),
    "compact": Command(compact_main, "merge each partition's files into one sorted file; no row changes"),
    "verify": Command(_lazy("pipelines.verify", "verify_main"), "check every invariant of an output folder"),
    "repair": Command(_lazy("pipelines.verify", "repair_main"),
                      "rebuild the key index, throughput_daily and a lost ledger from task_completed"),
    "rejects": Command(_lazy("pipelines.rejects", "rejects_main"),
                       "list, export or retry the records runs rejected (list|export|retry)"),
    "report": Command(_lazy("pipelines.report", "report_main"), "write a self-contained HTML throughput report"),
    "serve": Command(_lazy("intake.cli", "serve_main"),
                     "receive the Throughput API's calls and land them as JSON-lines files for the nightly run"),
    "new-key": Command(_lazy("intake.cli", "key_main"),
                       "make a new API key for a workstream and print the digest line for the configuration"),
}


def _usage() -> str:
    width = max(len(name) for name in _COMMANDS) + 2
    lines = [
        "usage: throughput <command> [options]     (throughput <command> --help lists its options)",
        "       throughput --version",
        "",
        "Commands:",
        *(f"  {name:<{width}}{entry.summary}" for name, entry in _COMMANDS.items()),
        "",
        _wrap(_BEAM_LINE),
        "",
        _wrap(_LOG_LINE),
        "",
        _exit_codes(list(_EXIT_CODES)),
    ]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("throughput")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return EXIT_COMMITTED if args else EXIT_USAGE
    if args[0] in ("-V", "--version"):
        print(f"throughput {_version()}")
        return EXIT_COMMITTED
    entry = _COMMANDS.get(args[0])
    if entry is None:
        close = difflib.get_close_matches(args[0], _COMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"throughput: unknown command {args[0]!r}{hint}; throughput --help lists the commands", file=sys.stderr)
        return EXIT_USAGE
    return entry.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
