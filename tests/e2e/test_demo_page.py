"""The demo page in a real headless Chromium (Debian's `chromium` and `chromium-driver`), its
microphone a fake device fed from a WAV file: the live transcript appears in the page, and the file
input transcribes through the HTTP API, both with a client secret only."""

from __future__ import annotations

import shutil
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from selenium.webdriver import Chrome as WebDriver

from tests.support.engines import FIXTURES
from tests.support.realtime import RATE, pcm24
from tests.support.server import Server, start_server, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
API_KEY = "demo-page-key"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("demo"), WHISPER_API_KEY=API_KEY, WHISPER_DEMO_PAGE="true")
    yield server
    stop(server)


def microphone_wav(folder: Path) -> Path:
    """What the fake microphone plays (looped): the fixture with silence around it, 24 kHz mono."""
    path = folder / "microphone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm24("short.wav", lead_s=1.0, tail_s=2.0))
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav(tmp_path)}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def test_the_page_is_off_unless_enabled(server: Server) -> None:
    assert httpx.get(f"{server.url}/demo", timeout=10).status_code == 404


def test_the_page_shows_the_live_transcript_of_the_microphone_and_transcribes_a_file(
    demo: Server, browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    driver = browser
    page = httpx.get(f"{demo.url}/demo", timeout=10)
    assert page.status_code == 200 and API_KEY not in page.text
    secret = openai.OpenAI(
        base_url=f"{demo.url}/v1", api_key=API_KEY, max_retries=0
    ).realtime.client_secrets.create()
    driver.get(f"{demo.url}/demo#{secret.value}")
    driver.find_element(By.ID, "start").click()

    def transcript(_: WebDriver) -> str | None:
        text = driver.find_element(By.ID, "transcript").text.lower()
        return text if "lazy dog" in text else None

    try:
        text = WebDriverWait(driver, 90, poll_frequency=0.5).until(transcript)
    except Exception:
        status = driver.find_element(By.ID, "status").text
        logs = "\n".join(str(entry) for entry in driver.get_log("browser"))
        raise AssertionError(f"no transcript; status {status!r}; console:\n{logs}") from None
    assert text is not None and "quick brown fox" in text
    assert driver.find_elements(By.CSS_SELECTOR, "#transcript .final")
    driver.find_element(By.ID, "stop").click()

    driver.find_element(By.ID, "file").send_keys(str(FIXTURES / "short.mp3"))
    driver.find_element(By.ID, "upload").click()
    WebDriverWait(driver, 60, poll_frequency=0.5).until(
        lambda _: "lazy dog" in driver.find_element(By.ID, "file-result").text.lower()
    )
