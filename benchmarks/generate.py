"""Deterministic generator of realistic task_completed input for the benchmarks and the reference test.

    python -m benchmarks.generate --records 1000000 --format jsonl --out benchmarks/data/1m-jsonl --seed 7

writes, under ``--out``:

* ``workstreams.json``: about 20 workstreams with their use cases and task definitions;
* ``part-00000.<ext>``, ``part-00001.<ext>``, ...: the records, ``--records-per-file`` per file, in
  generation order (the names sort in that order, which is SPEC 2.4's order);
* ``expected.json``: what a correct run must report (read, blank lines, written, rejected by code,
  superseded, ignored duplicates), derived from what the generator did, not from any engine.

The mix: thousands of workers (e-mail ids in mixed case, some padded with blanks), 30 days of
completion times written with various offsets, separators and fractions, ~60% of records with a
``unique_id``, ~5% duplicates of an earlier key (half with ``replace_duplicate`` true, half false,
spelled in the ways the contract allows), ~1% bad records cycling through every SPEC error code
the format can express (a few with a second, later problem to check the field-order rule), and
a few blank lines (JSONL). One ``record_too_large`` record per data set when ``--records`` is at
least 1000 (``--no-too-large`` drops it).

Records are built as dicts and dumped with orjson (JSONL) or csv.writer (CSV): about 1M records
in 15-25 s on one core.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.peers import FIELDS  # the contract's fields, as the peers read them

__all__ = ["FIELDS", "Generated", "generate", "main"]

CSV_COLUMNS = (*FIELDS, "client_version")  # one column outside the contract: goes to extra_fields

BAD_RATE = 0.01
DUPLICATE_RATE = 0.05
UNIQUE_ID_RATE = 0.60
BLANK_LINE_RATE = 0.0005
DAYS = 30
START = datetime(2024, 5, 1)

_WORKSTREAM_NAMES = (
    "ner", "transcribe", "ocr", "bbox", "sentiment", "translation", "moderation", "lidar", "receipts",
    "kyc", "catalog", "search-relevance", "medical-coding", "invoices", "speech-qa", "polygon", "video-tag",
    "chat-rating", "address-cleanup", "doc-classify",
)
_FIRST = ("ana", "bikash", "chen", "dawit", "elena", "farah", "gopal", "hana", "ivan", "jamila", "kiran",
          "lucia", "manoj", "nadia", "omar", "priya", "quentin", "rita", "sujan", "tomas", "uma", "victor")
_LAST = ("shrestha", "perez", "okafor", "kim", "rai", "gurung", "silva", "novak", "tamang", "ali", "mensah")
_DOMAINS = ("cloudfactory.com", "Vendor.example", "workforce.example.org")
# (offset minutes, suffix); None = no offset (read as UTC, the run's default time zone)
_OFFSETS = ((0, "Z"), (0, "Z"), (0, "Z"), (0, "+00:00"), (345, "+05:45"), (-300, "-05:00"),
            (60, "+01:00"), (540, "+09:00"), (-210, "-03:30"), (0, None))
_DATA_SOURCES = ("api", "api", "csv_manual", "csv_automated")


class _Rng(random.Random):
    """random.Random with cheaper randint/choice/randrange (one random() call each); deterministic."""

    def randint(self, a: int, b: int) -> int:  # type: ignore[override]
        return a + int(self.random() * (b - a + 1))

    def randrange(self, n: int) -> int:  # type: ignore[override]
        return int(self.random() * n)

    def choice(self, seq):  # type: ignore[override]  # noqa: ANN001, ANN201
        return seq[int(self.random() * len(seq))]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_config(rng: random.Random) -> dict[str, Any]:
    """About 20 workstreams, 1-3 use cases each, 1-3 task definitions per use case."""
    workstreams = []
    for name in _WORKSTREAM_NAMES:
        use_cases = []
        for u in range(rng.randint(1, 3)):
            use_cases.append({"id": _uuid(rng), "name": f"{name} use case {u + 1}",
                              "task_definitions": [_uuid(rng) for _ in range(rng.randint(1, 3))]})
        workstreams.append({"id": f"ws-{name}", "name": name.replace("-", " ").title(), "use_cases": use_cases})
    return {"workstreams": workstreams}


def _workers(rng: random.Random, count: int) -> list[str]:
    workers = []
    for n in range(count):
        if rng.random() < 0.6:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            local = f"{first}.{last}{n}"
            if rng.random() < 0.3:
                local = local.title()  # mixed case: the pipeline lower-cases e-mail ids
            workers.append(f"{local}@{rng.choice(_DOMAINS)}")
        else:
            workers.append(f"W{n:06d}")
    return workers


def _timestamp(rng: random.Random, utc: datetime) -> str:
    minutes, suffix = rng.choice(_OFFSETS)
    local = utc + timedelta(minutes=minutes)
    r = rng.random()
    spec = "milliseconds" if r < 0.6 else "seconds" if r < 0.85 else "microseconds"
    text = local.isoformat(sep=" " if rng.random() < 0.1 else "T", timespec=spec)
    return text + suffix if suffix else text


@dataclass
class Generated:
    """What the generator did: the files and the counts a correct run reports."""

    files: list[str]
    expected: dict[str, Any]


@dataclass
class _State:
    keys: list[tuple[str, str, str, str]] = field(default_factory=list)
    keys_seen: set[tuple[str, str, str, str]] = field(default_factory=set)
    rejected: Counter = field(default_factory=Counter)
    read: int = 0
    blank_lines: int = 0
    unkeyed: int = 0
    superseded: int = 0
    ignored: int = 0
    bad_seen: int = 0


class _Builder:
    def __init__(self, rng: random.Random, config: dict[str, Any], fmt: str) -> None:
        self.rng = rng
        self.fmt = fmt
        self.config = config
        self.choices = []  # (workstream, use case, task definition, workers), weighted towards a few workstreams
        weights = []
        for rank, ws in enumerate(config["workstreams"]):
            pool = _workers(rng, rng.randint(100, 400))
            for uc in ws["use_cases"]:
                for td in uc["task_definitions"]:
                    self.choices.append((ws["id"], uc["id"], td, pool))
                    weights.append(1.0 / (1 + rank * 0.25))
        self.cum = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)
        self.all_td = [td for _, _, td, _ in self.choices]
        self.kinds = [
            "malformed_json" if fmt == "jsonl" else "malformed_csv",
            *(["not_an_object"] if fmt == "jsonl" else []),
            "invalid_encoding", "missing_field", "invalid_type", "invalid_value", "invalid_timestamp",
            "completed_before_started", "invalid_data_source", "missing_workstream_id", "unknown_workstream",
            "unknown_use_case", "unknown_task_definition",
        ]

    def good(self, i: int, key: tuple[str, str, str] | None = None) -> dict[str, Any]:
        rng = self.rng
        if key is None:
            ws, uc, td, pool = self.choices[_bisect(self.cum, rng.random() * self.cum[-1])]
        else:
            ws, uc, td = key
            pool = next(c[3] for c in self.choices if c[0] == ws)
        completed = START + timedelta(microseconds=rng.randrange(DAYS * 86_400_000) * 1000)
        took = rng.randint(5, 7200) + rng.randrange(1000) / 1000
        started = completed - timedelta(seconds=took)
        worker = rng.choice(pool)
        rec: dict[str, Any] = {"workstream_id": ws if rng.random() > 0.01 else f" {ws} ", "worker_id": worker}
        if rng.random() < 0.02:
            rec["worker_id"] = f"  {worker}\t"
        if rng.random() < 0.9:
            rec["task_id"] = f"t-{i:09d}"
        if rng.random() < 0.5:
            rec["task_url"] = f"https://app.example.com/{ws}/tasks/{i}"
        r = rng.random()
        if r < 0.7:
            rec["task_count"] = 1
        elif r < 0.9:
            rec["task_count"] = rng.randint(2, 20)
        elif r < 0.95:
            rec["task_count"] = str(rng.randint(0, 20))  # a numeric string: accepted
        elif r < 0.97:
            rec["task_count"] = float(rng.randint(1, 20))  # 10.0: accepted
        if rng.random() < 0.4:
            rec["subtask_count"] = rng.randint(0, 50)
        rec["use_case_id"] = uc
        rec["task_definition_id"] = td
        rec["task_started_at"] = _timestamp(rng, started)
        rec["task_completed_at"] = _timestamp(rng, completed)
        if rng.random() < 0.5:
            rec["duration"] = round(max(0.0, took - rng.randint(0, 60)), 3) if rng.random() < 0.8 else rng.randint(0, 600)
        if rng.random() < 0.3:
            rec["task_created_at"] = _timestamp(rng, started - timedelta(seconds=rng.randint(0, 86_400)))
        r = rng.random()
        if r < 0.6:
            rec["data_source"] = rng.choice(_DATA_SOURCES)
        elif r < 0.63:
            rec["data_source"] = ""  # blank: absent
        if rng.random() < 0.4:
            rec["task_metadata"] = {"language": rng.choice(("en", "ne", "es", "fr")), "priority": rng.randint(1, 5),
                                    "batch": f"b-{rng.randint(1, 400)}"}
        if rng.random() < 0.3:
            rec["task_measurements"] = {"attribute_1_count": rng.randint(1, 900), "attribute_1_label": "Words"}
        if rng.random() < 0.3:
            rec["dataset_id"] = f"ds-{rng.randint(1, 60):03d}"
        if rng.random() < 0.2:
            rec["asset_id"] = f"asset-{rng.randint(1, 10**7)}"
        if rng.random() < 0.2:
            rec["received_at"] = _timestamp(rng, completed + timedelta(seconds=rng.randint(0, 600)))
        if rng.random() < 0.02:
            rec["client_version"] = f"2.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
        return rec

    def bool_text(self, value: bool) -> Any:
        spellings = (True, "true", "yes", "1", "TRUE", "Yes") if value else (False, "false", "no", "0", "False", "NO")
        choice = self.rng.choice(spellings)
        if self.fmt == "csv" and isinstance(choice, bool):
            return "true" if choice else "false"
        return choice

    def bad(self, i: int, kind: str, state: _State) -> tuple[dict[str, Any] | None, bytes | None]:
        """A record that a correct run rejects with ``kind``: a dict to dump, or raw bytes."""
        rng = self.rng
        rec = self.good(i)
        if state.keys and rng.random() < 0.3:  # a bad record may carry a live key: it must not take part in dedupe
            rec["workstream_id"], rec["use_case_id"], rec["task_definition_id"], rec["unique_id"] = rng.choice(state.keys)
        later_problem = rng.random() < 0.2  # a second problem in a later field: the first by field order wins
        if kind == "malformed_json":
            text = orjson.dumps(rec)
            return None, text[: rng.randint(1, len(text) - 1)] if rng.random() < 0.7 else b"{'single': 'quotes'}"
        if kind == "malformed_csv":
            row = self.csv_row(rec)
            return None, ((row + ",surplus") if rng.random() < 0.5 else row.rsplit(",", 1)[0]).encode()
        if kind == "not_an_object":
            return None, rng.choice((b"[1, 2, 3]", b'"task"', b"42", b"null", orjson.dumps([rec])))
        if kind == "invalid_encoding":  # a raw 0xFF byte inside worker_id
            marker = "\u2603MARK"
            rec["worker_id"] = marker + rec["worker_id"].strip()
            text = self.csv_row(rec).encode() if self.fmt == "csv" else orjson.dumps(rec)
            return None, text.replace(marker.encode(), b"\xff")
        if kind == "missing_field":
            victim = rng.choice(("worker_id", "use_case_id", "task_definition_id", "task_started_at", "task_completed_at"))
            if victim == "worker_id" and rng.random() < 0.5:
                rec[victim] = "   "  # blank counts as absent
            else:
                del rec[victim]
        elif kind == "invalid_type":
            options = ["task_count", "replace_duplicate", "task_metadata", "duration"]
            if self.fmt == "jsonl":
                options += ["worker_id", "task_url", "unique_id"]
            victim = rng.choice(options)
            rec[victim] = {"task_count": "ten", "replace_duplicate": "maybe", "task_metadata": "not json",
                           "duration": "abc", "worker_id": 5, "task_url": 123, "unique_id": 77}[victim]
            if victim in ("duration", "task_metadata", "replace_duplicate", "unique_id"):
                later_problem = False
        elif kind == "invalid_value":
            victim = rng.choice(("task_count", "task_count", "subtask_count", "duration"))
            rec[victim] = {"task_count": rng.choice((-1, 10.5, "-3")), "subtask_count": -2, "duration": -5.5}[victim]
            if victim == "duration":
                later_problem = False
        elif kind == "invalid_timestamp":
            victim = rng.choice(("task_started_at", "task_completed_at", "task_created_at", "received_at"))
            rec[victim] = rng.choice(("2024-13-45T10:00:00Z", "yesterday", "2024-05-03", "05/03/2024 10:00",
                                      "2024-05-03T25:00:00Z"))
            if victim in ("task_created_at", "received_at"):
                later_problem = False
        elif kind == "completed_before_started":
            base = START + timedelta(days=rng.randint(0, DAYS - 1), hours=rng.randint(1, 20))
            rec["task_started_at"] = base.isoformat() + "Z"
            rec["task_completed_at"] = (base - timedelta(minutes=rng.randint(1, 90))).isoformat() + "Z"
        elif kind == "invalid_data_source":
            rec["data_source"] = rng.choice(("web", "API", "csv", "manual"))
            later_problem = False
        elif kind == "missing_workstream_id":
            del rec["workstream_id"]
        elif kind == "unknown_workstream":
            rec["workstream_id"] = f"ws-retired-{rng.randint(1, 9)}"
        elif kind == "unknown_use_case":
            rec["use_case_id"] = _uuid(rng)
        elif kind == "unknown_task_definition":
            ws_tds = {c[2] for c in self.choices if c[0] == rec["workstream_id"].strip() and c[1] == rec["use_case_id"]}
            rec["task_definition_id"] = rng.choice([td for td in self.all_td if td not in ws_tds] or [_uuid(rng)])
        else:  # pragma: no cover
            raise ValueError(kind)
        if later_problem:
            rec["duration"] = -1  # invalid_value, but later in field order than the intended problem
        return rec, None

    def csv_row(self, rec: dict[str, Any]) -> str:
        buffer = self._csv_buffer
        buffer.seek(0)
        buffer.truncate()
        self._csv_writer.writerow(self.csv_cells(rec))
        return buffer.getvalue()

    _csv_buffer = io.StringIO()
    _csv_writer = csv.writer(_csv_buffer, lineterminator="")

    @staticmethod
    def csv_cells(rec: dict[str, Any]) -> list[Any]:
        cells = []
        for name in CSV_COLUMNS:
            value = rec.get(name)
            if value is None:
                cells.append("")
            elif value is True or value is False:
                cells.append("true" if value else "false")
            elif isinstance(value, dict):
                cells.append(orjson.dumps(value).decode())
            else:
                cells.append(value)
        return cells


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def generate(records: int, fmt: str, out: str | Path, seed: int = 7, records_per_file: int = 200_000,
             too_large: bool = True, config_seed: int | None = None) -> Generated:
    """Write the configuration, the input files and expected.json; return what was written."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown format {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*"):
        old.unlink()
    rng = _Rng(seed)
    # another data set for the same workstreams (a later night): its own seed, the config's seed
    config = build_config(rng if config_seed is None else _Rng(config_seed))
    (out / "workstreams.json").write_text(json.dumps(config, indent=1))
    builder = _Builder(rng, config, fmt)
    state = _State()
    files: list[str] = []
    too_large_at = records // 2 if too_large and records >= 1000 else -1
    handle = None
    file_no = -1
    for i in range(records):
        if i % records_per_file == 0:
            if handle is not None:
                handle.close()
            file_no += 1
            path = out / f"part-{file_no:05d}.{fmt}"
            files.append(str(path))
            handle = open(path, "wb")
            if fmt == "csv":
                handle.write(",".join(CSV_COLUMNS).encode() + b"\n")
        assert handle is not None
        state.read += 1
        if fmt == "jsonl" and rng.random() < BLANK_LINE_RATE:
            handle.write(rng.choice((b"\n", b"   \n")))
            state.blank_lines += 1
        if i == too_large_at:
            rec = builder.good(i)
            rec["task_metadata"] = {"notes": "x" * (1_100_000)}
            state.rejected["record_too_large"] += 1
            _write(handle, builder, rec, None, fmt)
            continue
        r = rng.random()
        if r < BAD_RATE:
            kind = builder.kinds[state.bad_seen % len(builder.kinds)]
            state.bad_seen += 1
            rec, raw = builder.bad(i, kind, state)
            state.rejected[kind] += 1
            _write(handle, builder, rec, raw, fmt)
            continue
        if r < BAD_RATE + DUPLICATE_RATE and state.keys:
            ws, uc, td, uid = rng.choice(state.keys)
            rec = builder.good(i, (ws, uc, td))
            rec["unique_id"] = uid if rng.random() < 0.9 else f" {uid} "
            replace = rng.random() < 0.5
            rec["replace_duplicate"] = builder.bool_text(replace)
            if replace:
                state.superseded += 1
            else:
                state.ignored += 1
            _write(handle, builder, rec, None, fmt)
            continue
        rec = builder.good(i)
        if rng.random() < UNIQUE_ID_RATE:
            uid = f"{rng.getrandbits(48):012x}-{i}"
            rec["unique_id"] = uid
            key = (rec["workstream_id"].strip(), rec["use_case_id"], rec["task_definition_id"], uid)
            state.keys.append(key)
            if rng.random() < 0.1:
                rec["replace_duplicate"] = builder.bool_text(rng.random() < 0.7)
        else:
            state.unkeyed += 1
        _write(handle, builder, rec, None, fmt)
    if handle is not None:
        handle.close()
    rejected = sum(state.rejected.values())
    written = state.unkeyed + len(state.keys)
    expected = {
        "records": records,
        "format": fmt,
        "seed": seed,
        "files": [Path(f).name for f in files],
        "read": state.read,
        "blank_lines": state.blank_lines,
        "written": written,
        "rejected": rejected,
        "superseded": state.superseded,
        "ignored_duplicates": state.ignored,
        "rejected_by_code": dict(sorted(state.rejected.items())),
    }
    assert expected["read"] == written + rejected + state.superseded + state.ignored
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return Generated(files, expected)


def _write(handle: Any, builder: _Builder, rec: dict[str, Any] | None, raw: bytes | None, fmt: str) -> None:
    if raw is not None:
        handle.write(raw + b"\n")
    elif fmt == "jsonl":
        handle.write(orjson.dumps(rec) + b"\n")
    else:
        handle.write(builder.csv_row(rec).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--format", dest="fmt", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--records-per-file", type=int, default=200_000)
    parser.add_argument("--no-too-large", action="store_true", help="leave out the record_too_large record")
    parser.add_argument("--config-seed", type=int, help="seed of the workstream configuration (default: --seed)")
    args = parser.parse_args(argv)
    result = generate(args.records, args.fmt, args.out, args.seed, args.records_per_file, not args.no_too_large,
                      args.config_seed)
    print(json.dumps(result.expected, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
