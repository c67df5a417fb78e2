"""The fleet simulator: real profiles, seeded, sliced in time, 10,000 households.

Fast tests use real rows inline (two London households from ``lcl_daily_dataset``
block_0) and intraday shapes from the shipped UCI slice; the ``slow`` ones use the full
London data in ``../shared/data``.
"""

from __future__ import annotations

import datetime as dt
import io
import math

import numpy as np
import pandas as pd
import pytest

from services.ingest.core.fleet import (
    HALF_HOUR_US,
    MINUTE_US,
    SCALED_UCI_COLUMNS,
    Fleet,
    FleetModel,
    FleetSlice,
    FleetSources,
    InjectedAnomaly,
    IntradayProfiles,
    LclDaily,
    UciSeries,
    check_slice,
    plan_fleet,
    simulate_fleet,
)
from services.ingest.sources import (
    LCL_DAILY_DIR,
    LCL_INFO_FILE,
    fleet_start_us,
    load_fleet,
    run_fleet,
)
from shared.batch import ReadingBatch, datetime_to_us
from shared.codec import decode_record
from shared.uci import iter_uci
from shared.validation import SanityLimits
from tests.conftest import APRIL_2007, DATA_DIR
from tests.services.ingest.fakes import MemoryPublisher

# Real rows of block_0: MAC000002 (14 complete days) and MAC003422 (complete days mixed
# with partial ones, energy_count 1 or 47, and two days without a row: 09-06, 09-14).
LCL_DAILY_ROWS = """\
LCLid,day,energy_median,energy_mean,energy_max,energy_count,energy_std,energy_sum,energy_min
MAC000002,2013-01-01,0.1925,0.22499999999999995,0.8859999999999999,48,0.16406563294880988,10.799999999999997,0.076
MAC000002,2013-01-02,0.2365,0.27708333125,1.0779999,48,0.18962502227847908,13.2999999,0.073
MAC000002,2013-01-03,0.1955,0.209875,1.0979999999999999,48,0.15463238836645732,10.074,0.075
MAC000002,2013-01-04,0.1815,0.20535416666666673,0.662,48,0.13295023698431077,9.857000000000003,0.07200000000000001
MAC000002,2013-01-05,0.1975,0.23272916666666663,1.181,48,0.18677244541218663,11.170999999999998,0.075
MAC000002,2013-01-06,0.2035,0.21443750000000006,1.092,48,0.15239993665185483,10.293000000000003,0.078
MAC000002,2013-01-07,0.1455,0.19664583333333338,0.727,48,0.14442674497170035,9.439000000000002,0.077
MAC000002,2013-01-08,0.159,0.24250000208333333,1.2410001,48,0.2070392192109736,11.6400001,0.075
MAC000002,2013-01-09,0.22649999999999998,0.31789583333333327,1.143,48,0.28515783159233016,15.258999999999997,0.077
MAC000002,2013-01-10,0.1695,0.22374999999999998,1.095,48,0.19045438388345262,10.739999999999998,0.075
MAC000002,2013-01-11,0.21000000000000002,0.22872916458333337,1.1109999,48,0.17541739297983147,10.978999900000002,0.07400000000000001
MAC000002,2013-01-12,0.21649999999999997,0.22054166458333338,1.1289999,48,0.16939477591074426,10.585999900000003,0.07400000000000001
MAC000002,2013-01-13,0.158,0.21583333333333335,1.206,48,0.18441446536392145,10.360000000000001,0.071
MAC000002,2013-01-14,0.2195,0.2556875,1.0070000000000001,48,0.2072336697618868,12.273,0.07400000000000001
MAC003422,2013-09-01,0.013000000000000001,0.013000000000000001,0.013000000000000001,1,,0.013000000000000001,0.013000000000000001
MAC003422,2013-09-02,0.012,0.014744680851063839,0.046,47,0.008453113872121925,0.6930000000000004,0.012
MAC003422,2013-09-03,0.012,0.014687500000000008,0.046,48,0.008372081898736354,0.7050000000000004,0.012
MAC003422,2013-09-04,0.012,0.014708333333333342,0.046,48,0.008366494304686677,0.7060000000000004,0.012
MAC003422,2013-09-05,0.012,0.012,0.012,1,,0.012,0.012
MAC003422,2013-09-07,0.012,0.014936170212765968,0.046,47,0.008575506716728677,0.7020000000000005,0.012
MAC003422,2013-09-08,0.012,0.014729166666666675,0.046,48,0.008360849960185721,0.7070000000000004,0.012
MAC003422,2013-09-09,0.012,0.014770833333333342,0.045,48,0.00839513431350827,0.7090000000000004,0.012
MAC003422,2013-09-10,0.012,0.014854166666666675,0.046,48,0.008325785588985515,0.7130000000000004,0.012
MAC003422,2013-09-11,0.012,0.012,0.012,1,,0.012,0.012
MAC003422,2013-09-12,0.012,0.014893617021276605,0.046,47,0.008493562888787656,0.7000000000000004,0.012
MAC003422,2013-09-13,0.012,0.012,0.012,1,,0.012,0.012
MAC003422,2013-09-15,0.012,0.014914893617021285,0.046,47,0.008489967960286865,0.7010000000000004,0.012
MAC003422,2013-09-16,0.012,0.014937500000000008,0.046,48,0.008446089993021195,0.7170000000000004,0.012
MAC003422,2013-09-17,0.012,0.014937500000000012,0.046,48,0.00837525801444413,0.7170000000000005,0.012
"""
LONDON_IDS = ("MAC000002", "MAC003422")
START = datetime_to_us(dt.datetime(2025, 11, 24, tzinfo=dt.UTC))
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US


def uci_profiles(series: UciSeries) -> IntradayProfiles:
    """Half-hourly shapes of the real UCI house (a minute's kWh = kW / 60), local clock."""
    local = series.start_us + series.utc_offset_us + np.arange(len(series)) * MINUTE_US
    frame = pd.DataFrame(
        {"slot": local // HALF_HOUR_US, "kwh": series.columns["global_active_power_kw"] / 60}
    )
    half_hours = frame.groupby("slot")["kwh"].sum(min_count=30)  # a gap minute: no shape
    stamps = pd.to_datetime(half_hours.index.to_numpy() * HALF_HOUR_US, unit="us")
    return IntradayProfiles.from_frame(
        pd.DataFrame(
            {
                "LCLid": "uci-sceaux",
                "tstp": stamps.strftime("%Y-%m-%d %H:%M:%S"),
                "energy(kWh/hh)": half_hours.to_numpy(),
            }
        )
    )


@pytest.fixture(scope="module")
def sources() -> FleetSources:
    uci = UciSeries.from_chunks(iter_uci(APRIL_2007))
    lcl = LclDaily.from_frame(pd.read_csv(io.StringIO(LCL_DAILY_ROWS)))
    return FleetSources(uci=uci, lcl=lcl, profiles=uci_profiles(uci))


def fleet_of(households: int, seed: int = 1, uci_share: float = 0.2) -> Fleet:
    return plan_fleet(households, seed=seed, lcl_candidates=LONDON_IDS, uci_share=uci_share)


def run(fleet: Fleet, sources: FleetSources, hours: float, window_s: int = 3600) -> dict:
    """Every household's readings over ``hours`` from START, joined across windows."""
    parts: dict[str, list[ReadingBatch]] = {}
    for part in simulate_fleet(
        fleet, sources, start_us=START, end_us=START + round(hours * HOUR_US), window_s=window_s
    ):
        for batch in part.batches():
            parts.setdefault(batch.household_id, []).append(batch)
    return {key: ReadingBatch.concat(value) for key, value in parts.items()}


def assert_same(a: dict[str, ReadingBatch], b: dict[str, ReadingBatch]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key].timestamps_us, b[key].timestamps_us)
        for name in a[key].columns:
            np.testing.assert_array_equal(a[key].columns[name], b[key].columns[name])


# -------------------------------------------------------------------------------- plan


def test_plan_fleet_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a, b, c = fleet_of(200, seed=9), fleet_of(200, seed=9), fleet_of(200, seed=10)
    for name in ("is_uci", "lcl_index", "day_offset", "scale", "profile_key"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.profile_key != c.profile_key).any()
    assert a.household_ids[0] == "sim-00001"
    assert len(set(a.household_ids)) == 200
    assert int(a.is_uci.sum()) == 40  # uci_share 0.2
    assert (a.scale[~a.is_uci] == 1.0).all()  # London daily sums are kept as they are
    assert ((a.scale[a.is_uci] >= 0.75) & (a.scale[a.is_uci] <= 1.2)).all()
    assert (a.day_offset % 7 == 0).all()  # whole weeks: the weekday is kept


def test_plan_fleet_draws_each_london_household_once_before_repeating() -> None:
    candidates = [f"MAC{i:06d}" for i in range(100)]
    fleet = plan_fleet(150, seed=2, lcl_candidates=candidates, uci_share=0)
    sources = [fleet.source_of(h) for h in fleet.household_ids]
    first_hundred = sources[:100]
    assert len(set(first_hundred)) == 100
    assert len(set(sources)) == 100


def test_plan_fleet_without_london_data_is_all_uci() -> None:
    fleet = plan_fleet(5, seed=0)
    assert fleet.is_uci.all()
    with pytest.raises(ValueError, match="needs the UCI house or London"):
        plan_fleet(5, seed=0, with_uci=False)


# --------------------------------------------------------------------------- generation


def test_simulate_fleet_same_seed_gives_identical_readings(sources: FleetSources) -> None:
    first = run(fleet_of(30, seed=4), sources, hours=26)
    again = run(fleet_of(30, seed=4), sources, hours=26)
    assert_same(first, again)
    other = run(fleet_of(30, seed=5), sources, hours=26)
    key = next(
        k for k in first if k in other and not np.isnan(first[k].columns["energy_kwh"]).all()
    )
    assert not np.array_equal(first[key].columns["energy_kwh"], other[key].columns["energy_kwh"])


def test_simulate_fleet_readings_do_not_depend_on_the_window_size(
    sources: FleetSources,
) -> None:
    fleet = fleet_of(20, seed=6)
    assert_same(run(fleet, sources, 30, window_s=600), run(fleet, sources, 30, window_s=86_400))


def test_simulate_fleet_london_days_sum_to_the_source_energy_sum(sources: FleetSources) -> None:
    fleet = fleet_of(40, seed=7, uci_share=0)
    model = FleetModel(fleet, sources)
    lcl = sources.lcl
    assert lcl is not None
    readings = run(fleet, sources, hours=14 * 24, window_s=6 * 3600)
    real_sums = set(
        pd.read_csv(io.StringIO(LCL_DAILY_ROWS)).query("energy_count == 48")["energy_sum"]
    )
    checked = 0
    for household_id, batch in readings.items():
        days = batch.timestamps_us // DAY_US
        for day in np.unique(days):
            kwh = batch.columns["energy_kwh"][days == day]
            assert len(kwh) == 48  # a day is complete or absent, never partial
            date = dt.date(1970, 1, 1) + dt.timedelta(days=int(day))
            source_date = model.source_date(household_id, date)
            assert source_date is not None
            expected = lcl.daily_kwh(fleet.source_of(household_id), source_date)
            assert kwh.sum() == pytest.approx(expected, rel=1e-12, abs=0)
            assert source_date.weekday() == date.weekday()
            assert any(math.isclose(kwh.sum(), real, rel_tol=1e-12) for real in real_sums)
            checked += 1
    assert checked > 300


def test_simulate_fleet_london_meters_send_half_hourly_energy_only(
    sources: FleetSources,
) -> None:
    fleet = fleet_of(10, seed=8, uci_share=0)
    for batch in run(fleet, sources, hours=48).values():
        assert batch.present_columns() == ("energy_kwh", "interval_s")
        assert (batch.columns["interval_s"] == 1800).all()
        assert (batch.timestamps_us % HALF_HOUR_US == 0).all()
        assert (np.diff(batch.timestamps_us) >= HALF_HOUR_US).all()
        readings = batch.slice(0, 2).to_readings()
        assert readings[0].global_active_power_kw is None
        assert readings[0].energy_kwh >= 0


def test_simulate_fleet_uci_households_replay_the_real_minutes_scaled(
    sources: FleetSources,
) -> None:
    fleet = fleet_of(10, seed=3, uci_share=1.0)
    uci = sources.uci
    assert uci is not None
    real = {name: set(column[uci.present].tolist()) for name, column in uci.columns.items()}
    readings = run(fleet, sources, hours=24)
    assert len(readings) == 10
    for household_id, batch in readings.items():
        scale = fleet.scale[fleet.household_ids.index(household_id)]
        assert (batch.timestamps_us % MINUTE_US == 0).all()
        assert set(batch.columns["voltage_v"].tolist()) <= real["voltage_v"]
        power = batch.columns["global_active_power_kw"] / scale
        assert np.isin(np.round(power, 9), np.round(list(real["global_active_power_kw"]), 9)).all()
        assert set(SCALED_UCI_COLUMNS) <= set(batch.present_columns())


def test_simulate_fleet_missing_source_days_stay_missing(sources: FleetSources) -> None:
    fleet = plan_fleet(1, seed=0, lcl_candidates=["MAC003422"], with_uci=False)
    model = FleetModel(fleet, sources)
    slices = [model.window(t, t + DAY_US) for t in range(START, START + 14 * DAY_US, DAY_US)]
    present_days = sum(1 for parts in slices if parts[0].readings)
    # complete days 09-03..09-17 span 15 days: a cycle of two whole weeks, 09-03..09-16,
    # holds 6 complete days; its partial days and absent rows stay gaps
    assert present_days == 6
    assert all(parts[0].readings in (0, 48) for parts in slices)
    assert sum(parts[0].missing for parts in slices) == 8 * 48


def test_simulate_fleet_10000_households_short_range_all_valid(sources: FleetSources) -> None:
    fleet = fleet_of(10_000, seed=11)
    model = FleetModel(fleet, sources)
    published = rejected = missing = 0
    for t0 in range(START, START + 2 * HOUR_US, 30 * MINUTE_US):
        for part in model.window(t0, t0 + 30 * MINUTE_US):
            checked = check_slice(part, now_us=t0 + 30 * MINUTE_US)
            published += checked.readings
            rejected += len(checked.rejected)
            missing += checked.missing
    n_uci, n_lcl = int(fleet.is_uci.sum()), int((~fleet.is_uci).sum())
    assert rejected == 0
    assert published + missing == n_uci * 120 + n_lcl * 4
    assert published > 0.7 * (n_uci * 120 + n_lcl * 4)


def test_check_slice_splits_per_household_and_explains_rejections() -> None:
    stamps = START + np.array([0, MINUTE_US, 2 * MINUTE_US], dtype=np.int64)
    power = np.array([[1.0, -1.0, 2.0], [0.5, 0.6, np.nan]])
    present = ~np.isnan(power)
    slice_ = FleetSlice(("h1", "h2"), stamps, {"global_active_power_kw": power}, present)
    checked = check_slice(slice_, now_us=START + MINUTE_US)  # 2 min is 60 s ahead: within 300 s
    assert [b.household_id for b in checked.batches] == ["h1", "h2"]
    assert checked.batches[0].timestamps_us.tolist() == [START, START + 2 * MINUTE_US]
    assert checked.batches[1].columns["global_active_power_kw"].tolist() == [0.5, 0.6]
    assert checked.missing == 1
    [bad] = checked.rejected
    assert (bad.household_id, bad.timestamp_us, bad.rejection.code) == (
        "h1",
        START + MINUTE_US,
        "negative_power",
    )
    assert b'"global_active_power_kw": -1.0' in bad.original()
    future = check_slice(slice_, now_us=START - 10 * MINUTE_US, limits=SanityLimits())
    assert {r.rejection.code for r in future.rejected} == {"future_timestamp", "negative_power"}


# ------------------------------------------------------------------------------- driver


def test_fleet_start_is_floored_to_the_half_hour() -> None:
    now = datetime_to_us(dt.datetime(2025, 11, 24, 16, 47, 5, tzinfo=dt.UTC)) / 1e6
    assert fleet_start_us("now", now_s=now) == datetime_to_us(
        dt.datetime(2025, 11, 24, 16, 30, tzinfo=dt.UTC)
    )
    with pytest.raises(ValueError, match="aware"):
        fleet_start_us(dt.datetime(2025, 1, 1), now_s=now)


def test_run_fleet_publishes_every_household_in_order(sources: FleetSources) -> None:
    fleet = fleet_of(50, seed=12)
    publisher = MemoryPublisher()
    report = run_fleet(
        fleet,
        sources,
        publisher,
        start=dt.datetime(2025, 11, 24, tzinfo=dt.UTC),
        days=2,
        speed="max",
        max_window_readings=3000,  # ~11 readings a minute: windows of 264 minutes
    )
    per_household: dict[str, list[ReadingBatch]] = {}
    for record in publisher.records:
        batch = decode_record(record.data)
        assert batch.household_id == record.partition_key
        per_household.setdefault(record.partition_key, []).append(batch)
    joined = {k: ReadingBatch.concat(v) for k, v in per_household.items()}
    assert sum(len(b) for b in joined.values()) == report.readings_published
    assert all((np.diff(b.timestamps_us) > 0).all() for b in joined.values())
    assert report.windows > 2
    assert report.rejected == 0
    assert report.records == len(publisher.records)
    n_uci = int(fleet.is_uci.sum())
    cells = n_uci * 2 * 1440 + (50 - n_uci) * 2 * 48
    assert report.readings_published + report.rows_missing == cells
    assert report.source == "simulate:seed=12"


def test_run_fleet_paced_sends_a_half_hour_only_after_it_ended(sources: FleetSources) -> None:
    wall = [1_764_000_000.0]
    calls: list[tuple[float, list]] = []

    class Publisher(MemoryPublisher):
        def publish(self, records):  # type: ignore[no-untyped-def]
            calls.append((wall[0], list(records)))
            return super().publish(records)

    def sleep(seconds: float) -> None:
        wall[0] += seconds

    fleet = fleet_of(5, seed=13, uci_share=0)
    start = dt.datetime(2025, 11, 24, tzinfo=dt.UTC)
    report = run_fleet(
        fleet,
        sources,
        Publisher(),
        start=start,
        days=0.5,
        speed=600,
        clock=lambda: wall[0],
        sleep=sleep,
    )
    assert report.windows == 72  # 12 h in windows of 10 simulated minutes
    for at, records in calls:
        sim_now = datetime_to_us(start) + (at - 1_764_000_000.0) * 600e6
        for record in records:
            assert decode_record(record.data).timestamps_us.max() + HALF_HOUR_US <= sim_now + 1


# --------------------------------------------------------------------- full real data


@pytest.fixture(scope="module")
def real_fleet() -> tuple[Fleet, FleetSources]:
    if not (DATA_DIR / LCL_INFO_FILE).exists():
        pytest.skip(f"London data not found in {DATA_DIR} (set WATTSTREAM_DATA_DIR)")
    return load_fleet(300, seed=21, data_dir=DATA_DIR, uci_path=APRIL_2007)


@pytest.mark.slow
def test_load_fleet_real_london_days_sum_to_the_block_files(
    real_fleet: tuple[Fleet, FleetSources],
) -> None:
    fleet, sources = real_fleet
    info = pd.read_csv(DATA_DIR / LCL_INFO_FILE).set_index("LCLid")["file"]
    model = FleetModel(fleet, sources)
    start = dt.date(2025, 11, 24)
    checked = 0
    for household_id in model.lcl_household_ids[:40]:
        lcl_id = fleet.source_of(household_id)
        block = pd.read_csv(DATA_DIR / LCL_DAILY_DIR / f"{info[lcl_id]}.csv.gz")
        rows = block[block["LCLid"] == lcl_id].set_index("day")
        for offset in range(3):
            date = start + dt.timedelta(days=offset)
            t0 = datetime_to_us(dt.datetime.combine(date, dt.time(), dt.UTC))
            [london] = [p for p in model.window(t0, t0 + DAY_US) if "energy_kwh" in p.columns]
            kwh = london.columns["energy_kwh"][london.household_ids.index(household_id)]
            source_date = model.source_date(household_id, date)
            day = str(source_date)
            if source_date is None or day not in rows.index or rows.loc[day, "energy_count"] != 48:
                assert np.isnan(kwh).all()  # no complete source day: no readings at all
                continue
            source = rows.loc[day]
            assert kwh.sum() == pytest.approx(source["energy_sum"], rel=1e-12)
            checked += 1
    assert checked > 60


@pytest.mark.slow
def test_load_fleet_10000_real_households_pass_validation() -> None:
    if not (DATA_DIR / LCL_INFO_FILE).exists():
        pytest.skip(f"London data not found in {DATA_DIR} (set WATTSTREAM_DATA_DIR)")
    fleet, sources = load_fleet(10_000, seed=22, data_dir=DATA_DIR, uci_path=APRIL_2007)
    assert len(fleet.lcl_ids) == 5566  # 8,000 London households: every real one used
    report = run_fleet(
        fleet,
        sources,
        MemoryPublisher(),
        start=dt.datetime(2025, 11, 24, tzinfo=dt.UTC),
        days=1 / 24,
        speed="max",
    )
    assert report.rejected == 0
    assert report.readings_published > 0.8 * (2000 * 60 + 8000 * 2)


def _published(publisher: MemoryPublisher) -> dict[str, ReadingBatch]:
    parts: dict[str, list[ReadingBatch]] = {}
    for record in publisher.records:
        batch = decode_record(record.data)
        parts.setdefault(batch.household_id, []).append(batch)
    return {k: ReadingBatch.concat(v) for k, v in parts.items()}


def test_run_fleet_injected_anomaly_adds_its_power_to_one_household_only(
    sources: FleetSources,
) -> None:
    fleet = fleet_of(4, seed=3, uci_share=0.0)
    target = fleet.household_ids[0]
    begin = START + 17 * HOUR_US
    anomaly = InjectedAnomaly(target, begin, begin + 3 * HOUR_US, extra_kw=1.5)
    start = dt.datetime(2025, 11, 24, tzinfo=dt.UTC)
    plain, marked = MemoryPublisher(), MemoryPublisher()
    run_fleet(fleet, sources, plain, start=start, days=1, speed="max")
    run_fleet(fleet, sources, marked, start=start, days=1, speed="max", anomaly=anomaly)
    before, after = _published(plain), _published(marked)
    for household in fleet.household_ids:
        old, new = before[household], after[household]
        np.testing.assert_array_equal(old.timestamps_us, new.timestamps_us)
        delta = new.columns["energy_kwh"] - old.columns["energy_kwh"]
        hit = (old.timestamps_us >= begin) & (old.timestamps_us < begin + 3 * HOUR_US)
        if household == target:
            np.testing.assert_allclose(delta[hit], 0.75)  # 1.5 kW over half an hour
            assert hit.sum() == 6
            np.testing.assert_array_equal(delta[~hit], 0.0)
        else:
            np.testing.assert_array_equal(delta, 0.0)
