"""Codec benchmark: our aggregated records vs one JSON document per reading.

``python -m bench codec [--repeat N] [--rows N] [--source FILE]`` (from the repo root).

Measured in one process on one core, in the same run, on real data (the April 2007 UCI
slice shipped in ``data/``), best of N repetitions with ``time.perf_counter``:

* ours, columnar: ``encode_batch(batch)`` and ``decode_record`` of every record to a
  ``ReadingBatch``; this is how the services use the codec;
* ours, from/to models: ``encode_readings(list[MeterReading])`` and ``decode_record`` then
  ``to_readings()`` — reported separately, because building pydantic models costs far more
  than the codec itself, and a caller holding models pays it;
* baseline: ``json.dumps(model.model_dump(mode="json")).encode()`` per reading, and
  ``MeterReading.model_validate_json`` per document.

Every path is checked to round-trip the data before it is timed. The last line of output
is one JSON object; ``ratio`` is our columnar round-trip throughput (readings per second
of encode + decode) divided by the baseline's, ``encode_ratio``/``decode_ratio`` the same
per direction, ``models_ratio`` the round-trip ratio of the from/to-models path.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shared.batch import ReadingBatch
from shared.codec import decode_record, encode_batch, encode_readings
from shared.schema import MeterReading
from shared.uci import iter_uci

DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1] / "data" / "uci_household_power_consumption_2007-04.txt.gz"
)

T = TypeVar("T")


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeat`` runs (the least disturbed by other processes)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result  # type: ignore[return-value]


def load(source: Path, rows: int | None) -> ReadingBatch:
    batch = ReadingBatch.concat([chunk.readings for chunk in iter_uci(source)])
    return batch if rows is None else batch.slice(0, rows)


def run(source: Path, *, repeat: int, rows: int | None) -> dict[str, object]:
    batch = load(source, rows)
    models = batch.to_readings()
    n = len(batch)
    print(f"codec benchmark: {n:,} real readings from {source.name}, best of {repeat}")

    t_enc, records = best_of(repeat, lambda: encode_batch(batch))
    t_dec, decoded = best_of(repeat, lambda: [decode_record(r) for r in records])
    assert ReadingBatch.concat(decoded).to_readings() == models, "columnar round trip"

    tm_enc, pairs = best_of(repeat, lambda: encode_readings(models))
    tm_dec, model_lists = best_of(
        repeat, lambda: [decode_record(data).to_readings() for _, data in pairs]
    )
    assert [m for ms in model_lists for m in ms] == models, "models round trip"

    tb_enc, docs = best_of(
        repeat, lambda: [json.dumps(m.model_dump(mode="json")).encode() for m in models]
    )
    tb_dec, parsed = best_of(repeat, lambda: [MeterReading.model_validate_json(d) for d in docs])
    assert parsed == models, "baseline round trip"

    ours_bytes = sum(map(len, records))
    base_bytes = sum(map(len, docs))
    for label, enc, dec in (
        ("ours, columnar", t_enc, t_dec),
        ("ours, from/to models", tm_enc, tm_dec),
        ("baseline JSON per reading", tb_enc, tb_dec),
    ):
        print(
            f"  {label:27s} encode {n / enc:>12,.0f} readings/s   decode {n / dec:>12,.0f} "
            "readings/s"
        )
    print(
        f"  size: ours {ours_bytes:,} B in {len(records)} records "
        f"({ours_bytes / n:.2f} B/reading); baseline {base_bytes:,} B in {n:,} records "
        f"({base_bytes / n:.1f} B/reading)"
    )
    return {
        "benchmark": "codec",
        "source": source.name,
        "readings": n,
        "repeat": repeat,
        "processes": 1,
        "python": platform.python_version(),
        "encode_readings_per_s": round(n / t_enc),
        "decode_readings_per_s": round(n / t_dec),
        "baseline_encode_readings_per_s": round(n / tb_enc),
        "baseline_decode_readings_per_s": round(n / tb_dec),
        "encode_ratio": round(tb_enc / t_enc, 1),
        "decode_ratio": round(tb_dec / t_dec, 1),
        "ratio": round((tb_enc + tb_dec) / (t_enc + t_dec), 1),
        "ratio_definition": "round-trip readings/s (encode+decode), ours columnar / baseline",
        "models_encode_readings_per_s": round(n / tm_enc),
        "models_decode_readings_per_s": round(n / tm_dec),
        "models_ratio": round((tb_enc + tb_dec) / (tm_enc + tm_dec), 2),
        "bytes_per_reading": round(ours_bytes / n, 2),
        "baseline_bytes_per_reading": round(base_bytes / n, 1),
        "records": len(records),
        "baseline_records": n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench codec", description=__doc__)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="UCI text file")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (best is kept)")
    parser.add_argument("--rows", type=int, default=None, help="use only the first N readings")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.source, repeat=args.repeat, rows=args.rows)))
    return 0
