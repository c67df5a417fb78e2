"""Headless browser: the dashboard, against the API on a deployed moto stack, shows data
to whoever signs in, and only what their token may read.

The stack is the real template on moto; real UCI readings, forecasts and a monthly
result are published and consumed by the gateway's own handlers on the local runner; the
API (uvicorn) and the Streamlit dashboard run on free loopback ports; Debian's chromium
(driven by selenium + chromedriver) loads the dashboard. A household signs in with its own token: it
sees its charts drawn with data (pixels of the actual and forecast series), its month with
the gap-day term, and nothing of the other household nor the operator's tabs. An operator
signs in: it sees the fleet (both households, accuracy, anomalies, pipeline health) and
the controls. Screenshots go next to ``$WATTSTREAM_SCREENSHOT`` or into the test's
tmp_path (``dashboard-live.png``, ``dashboard.png`` (month), ``dashboard-fleet.png``,
``dashboard-pipeline.png``, ``dashboard-sign-in.png``).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.gateway.adapters.aws import S3Objects, S3Uploads, SqsQueueDepths
from services.gateway.adapters.dynamo_store import DynamoGatewayStore
from services.gateway.core.tokens import issue_token
from services.gateway.shells import forecasts_lambda, readings_lambda, results_lambda
from services.gateway.shells.api_app import ApiDeps, create_app
from services.gateway.shells.consumer import ConsumerDeps
from services.gateway.shells.serve import start_api, start_dashboard
from shared.batch import us_to_datetime
from shared.publishing import stream_records
from shared.schema import Forecast, MonthlyForecast
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from shared.uci import iter_uci
from testing.reliability.gateway_world import flat_forecasts, forecast_for, monthly_for
from tests.conftest import APRIL_2007
from tests.services.ingest.fakes import MemoryQuarantine
from wattstream.local.net import free_port
from wattstream.local.runner import EventSourceRunner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HOUSEHOLD = "uci-0001"
NEIGHBOUR = "uci-0002"  # another household: never visible to HOUSEHOLD's token
SECRET = "browser-test-secret-0123456789-0123456789"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are needed (apt-get install chromium "
    "chromium-driver)",
)


def _png() -> bytes:
    """A real PNG standing in for the monthly service's components plot."""
    from PIL import Image

    image = Image.new("RGB", (320, 120), (255, 255, 255))
    for x in range(320):
        image.putpixel((x, 60 + int(40 * np.sin(x / 20))), (31, 119, 180))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _past_forecasts(last: dt.datetime) -> list[Forecast]:
    """Quarter-hourly forecasts of the last 6 hours (what the live chart draws in green)."""
    quarter = last.replace(minute=last.minute - last.minute % 15, second=0, microsecond=0)
    first = quarter - dt.timedelta(hours=5, minutes=45)  # 24 steps inside the 6-hour window
    return flat_forecasts(HOUSEHOLD, first, 24, steps=4, band=(0.3, 1.0, 2.5))


def _monthly_with_gap_day() -> MonthlyForecast:
    """The fixture month with day 2 missing: 2 days measured + 1 estimated + 27 forecast."""
    monthly = monthly_for(HOUSEHOLD)
    daily = [p.model_copy(update={"is_actual": p.date.day in (1, 3)}) for p in monthly.daily]
    return MonthlyForecast.model_validate(
        {
            **monthly.model_dump(),
            "as_of": dt.date(2007, 4, 3),
            "daily": [p.model_dump() for p in daily],
            "rest_of_month_kwh": 810.0,
        }
    )


def _load(stack, clients, tmp_path) -> dt.datetime:
    """A day of real readings, forecasts and a monthly result, consumed into the store."""
    chunk = next(iter(iter_uci(APRIL_2007, household_id=HOUSEHOLD, chunk_rows=1440)))
    readings = chunk.readings
    neighbour = next(iter(iter_uci(APRIL_2007, household_id=NEIGHBOUR, chunk_rows=120)))
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(
        stream_records([readings, neighbour.readings], readings_per_record=720)
    )
    last = us_to_datetime(int(readings.timestamps_us.max()))
    forecasts = [
        forecast_for(HOUSEHOLD, last - dt.timedelta(hours=3), anomaly=True),
        forecast_for(HOUSEHOLD, last),
        *_past_forecasts(last),
    ]
    KinesisPublisher(stack.outputs["ForecastsStreamName"], clients("kinesis")).publish(
        [StreamRecord(HOUSEHOLD, f.model_dump_json().encode()) for f in forecasts]
    )
    monthly = _monthly_with_gap_day()
    bucket = stack.outputs["ModelsBucketName"]
    s3 = clients("s3")
    s3.put_object(Bucket=bucket, Key=monthly.plot_keys["components"], Body=_png())
    s3.put_object(
        Bucket=bucket, Key=f"results/monthly/{HOUSEHOLD}.json", Body=monthly.model_dump_json()
    )
    deps = ConsumerDeps(
        store=DynamoGatewayStore(stack.outputs["GatewayTableName"], client=clients("dynamodb")),
        quarantine=MemoryQuarantine(),
        logger=Logger(service="gateway-browser-test"),
        metrics=Metrics(namespace="wattstream-test", service="gateway-browser-test"),
        objects=S3Objects(s3=clients("s3")),
    )
    handlers = {
        "GatewayReadingsFunction": readings_lambda.handler.build(deps),
        "GatewayForecastsFunction": forecasts_lambda.handler.build(deps),
        "GatewayResultsFunction": results_lambda.handler.build(deps),
    }
    EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "checkpoints.json",
        handlers=handlers,
        functions=set(handlers),
        idle_sleep_s=0.01,
    ).drain(timeout_s=120)
    return last


def _api(stack, clients):
    sqs = clients("sqs")
    quarantine = sqs.get_queue_url(QueueName=stack.outputs["QuarantineQueueUrl"].rsplit("/", 1)[1])[
        "QueueUrl"
    ]
    deps = ApiDeps(
        store=DynamoGatewayStore(stack.outputs["GatewayTableName"], client=clients("dynamodb")),
        token_secret=SECRET,
        objects=S3Objects(s3=clients("s3")),
        models_bucket=stack.outputs["ModelsBucketName"],
        queues=SqsQueueDepths({"QuarantineQueue": quarantine}, sqs=sqs),
        uploads=S3Uploads(stack.outputs["RawBucketName"], s3=clients("s3")),
        logger=Logger(service="gateway-browser-test"),
    )
    return start_api(create_app(deps))


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the dashboard did not become healthy")


def _browser(profile: Path):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1800",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(options=options, service=service)


def _series_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tolerance).sum())


def _green_pixels(png: bytes) -> int:
    """Pixels of the past-forecast line: clearly green, blended or not with its pale band."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((green - red > 60) & (green - blue > 60)).sum())


def _body(browser) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "body").text)


def _sign_in(browser, url: str, token: str, wait, shot: Path | None = None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(url)
    field = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, 'input[type="password"]'))
    )
    if shot is not None:
        browser.save_screenshot(str(shot))
        print(f"dashboard screenshot (sign-in): {shot}")
    field.send_keys(token)
    browser.find_element(By.XPATH, '//button[contains(., "sign in")]').click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Signed in as"))


def _household_options(browser, wait) -> list[str]:
    """The households the sidebar's selectbox offers (opened, read, closed)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    browser.find_element(By.CSS_SELECTOR, '[data-testid="stSelectbox"] input').click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, '[role="option"]')))
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, '[role="option"]')]
    browser.find_element(By.CSS_SELECTOR, '[data-testid="stSelectbox"] input').send_keys(
        Keys.ESCAPE
    )
    return options


def _tab(browser, name: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.XPATH, f'//*[@role="tab"][contains(., "{name}")]').click()


def test_dashboard_browser_household_and_operator_sign_in(deploy_stack, clients, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    stack = deploy_stack(parameters={"ReadingsShardCount": "1", "ForecastsShardCount": "1"})
    _load(stack, clients, tmp_path)
    api = _api(stack, clients)
    household_token = issue_token(SECRET, households=[HOUSEHOLD], ttl_s=3600)
    operator_token = issue_token(SECRET, operator=True, ttl_s=3600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "streamlit.log").open("wb")
    dashboard = start_dashboard(api.url, port=port, refresh_s=30, log=log)
    browser = None
    screenshot = Path(os.environ.get("WATTSTREAM_SCREENSHOT", tmp_path / "dashboard.png"))
    screenshot.parent.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> Path:
        return screenshot.with_name(f"{screenshot.stem}-{name}{screenshot.suffix}")

    charts = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
    try:
        _wait_healthy(url, dashboard)
        browser = _browser(tmp_path / "chromium-profile")
        wait = WebDriverWait(browser, 90)
        browser.get(url)
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, 'input[type="password"]')))
        anonymous_text = _body(browser)

        # a wrong token is refused on the sign-in form
        _sign_in_refused = issue_token(
            "another-secret-0123456789-0123456789", operator=True, ttl_s=3600
        )
        browser.find_element(By.CSS_SELECTOR, 'input[type="password"]').send_keys(_sign_in_refused)
        browser.find_element(By.XPATH, '//button[contains(., "sign in")]').click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "sign-in refused"))

        # the household
        _sign_in(browser, url, household_token, wait, shot("sign-in"))
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, charts)))
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "minute points"))
        time.sleep(1.0)  # let vega finish drawing the canvas
        live_text = _body(browser)
        live_png = browser.find_element(By.CSS_SELECTOR, charts).screenshot_as_png
        tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, '[role="tab"]')]
        household_options = _household_options(browser, wait)
        browser.save_screenshot(str(shot("live")))
        print(f"dashboard screenshot (household, live tab): {shot('live')}")

        _tab(browser, "Month")
        plots = '[data-testid="stImage"] img'
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, plots)))
        wait.until(
            lambda b: (
                len([c for c in b.find_elements(By.CSS_SELECTOR, charts) if c.is_displayed()]) >= 1
            )
        )
        time.sleep(1.0)
        month_text = _body(browser)
        month_chart = next(
            c for c in browser.find_elements(By.CSS_SELECTOR, charts) if c.is_displayed()
        )
        month_png = month_chart.screenshot_as_png
        plot_width = browser.find_element(By.CSS_SELECTOR, plots).get_property("naturalWidth")
        browser.save_screenshot(str(screenshot))
        print(f"dashboard screenshot (household, month tab): {screenshot}")
        browser.find_element(By.XPATH, '//button[contains(., "sign out")]').click()
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, 'input[type="password"]')))

        # the operator
        _sign_in(browser, url, operator_token, wait)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Households (2)"))
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Anomalies, last"))
        time.sleep(1.0)
        fleet_text = _body(browser)
        operator_tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, '[role="tab"]')]
        operator_options = _household_options(browser, wait)
        browser.save_screenshot(str(shot("fleet")))
        print(f"dashboard screenshot (operator, fleet tab): {shot('fleet')}")
        _tab(browser, "Pipeline")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Replay real data"))
        time.sleep(1.0)
        pipeline_text = _body(browser)
        browser.save_screenshot(str(shot("pipeline")))
        print(f"dashboard screenshot (operator, pipeline tab): {shot('pipeline')}")
    finally:
        if browser is not None:
            failure = shot("failure")
            if not shot("pipeline").exists():  # a failure: keep what the browser showed
                browser.save_screenshot(str(failure))
                print(f"dashboard screenshot (failure): {failure}")
                print(_body(browser)[:3000])
            browser.quit()
        dashboard.terminate()
        dashboard.wait(timeout=20)
        log.close()
        api.stop()

    # nobody is signed in by the server: the first page is the sign-in form, no data
    assert "access token" in anonymous_text
    assert "wattstream token --household ID" in anonymous_text
    assert HOUSEHOLD not in anonymous_text
    # the household sees its own data only, and no operator tab
    assert [t for t in tabs if t] == ["Live", "Month"]
    assert household_options == [HOUSEHOLD]
    assert f"Signed in as household {HOUSEHOLD}" in live_text
    assert NEIGHBOUR not in live_text + month_text
    assert f"{HOUSEHOLD}: 360 minute points" in live_text  # a 6-hour window of real minutes
    assert "latest reading (UTC)" in live_text
    assert "prediction interval" in live_text
    assert "excess: +1.50 kWh vs usual over 1 h (score 3.50)" in live_text  # the mark's size
    assert _series_pixels(live_png, (31, 119, 180)) > 200  # the actual series (blue)
    assert _series_pixels(live_png, (255, 127, 14)) > 10  # the forecast (orange)
    assert _green_pixels(live_png) > 200  # past forecasts (green steps over their band)
    assert "Forecast accuracy, last 7 days" in live_text
    # 24 quarter-hourly forecasts and the minute forecast issued 3 h before the last reading
    assert "25 past forecasts (first step of each) against the actuals" in live_text
    assert "MASE vs same as yesterday" in live_text
    # the month's terms add up on screen, each with its cost in the currency
    assert (
        "60.0 kWh measured + 30.0 kWh estimated for 1 day(s) so far without complete "
        "readings + 810.0 kWh forecast to month end = 900.0 kWh month total (GBP 180.00)"
    ) in month_text
    assert "cost GBP 12.00" in month_text  # 60 kWh at the default GBP 0.20
    assert "↑" not in month_text + live_text
    assert _series_pixels(month_png, (255, 153, 62)) > 200  # forecast days (orange at 0.8)
    assert plot_width == 320  # the components plot, streamed through the API
    assert screenshot.stat().st_size > 10_000
    # the operator sees the fleet and the pipeline
    assert [t for t in operator_tabs if t] == ["Fleet", "Live", "Month", "Pipeline"]
    assert "Signed in as operator" in fleet_text
    assert "Households (2)" in fleet_text
    assert operator_options == [HOUSEHOLD, NEIGHBOUR]
    assert "Fleet forecast accuracy, last 7 days" in fleet_text
    assert "Anomalies, last 24 h of each household" in fleet_text
    assert "Replay real data" in pipeline_text
    assert "messages in QuarantineQueue" in pipeline_text
    assert "Pipeline health" in pipeline_text
    assert "pipeline health needs an operator token" not in pipeline_text
