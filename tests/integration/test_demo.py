"""``python -m mowe.inference.web_demo`` in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): load the page, upload a clip, ask, screenshot, and find the answer the
offline API gives for that clip.

Chromium and chromedriver are installed by tools/install.sh when it runs as root, as in CI,
so there (root, or CI set) the test runs and fails if they are missing; only on a machine
where neither holds (a developer without root) is it skipped, saying why.
"""

import os
import shutil
import time

import pytest

from serving import Process, free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MUST_RUN = bool(os.environ.get("CI")) or os.geteuid() == 0
if not (CHROMIUM and CHROMEDRIVER) and not MUST_RUN:
    pytest.skip("no chromium/chromedriver here (tools/install.sh installs them as root; "
                "CI always runs this test)", allow_module_level=True)


@pytest.fixture(scope="module")
def demo_url(tiny_package):
    port = free_port()
    process = Process(["-m", "mowe.inference.web_demo", "--model", str(tiny_package["package"]),
                       "--port", str(port), "--stop_after", "900"])
    process.wait_for("demo of ")
    yield f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1100", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_page_answers_an_uploaded_clip(demo_url, browser, tiny_package, tmp_path):
    from selenium.webdriver.common.by import By

    row = next(r for r in tiny_package["hyps"] if r["hyp"].isprintable()) \
        if any(r["hyp"].isprintable() for r in tiny_package["hyps"]) else tiny_package["hyps"][0]
    browser.get(demo_url)
    file_input = wait_until(lambda: browser.find_elements(
        By.CSS_SELECTOR, "#mowe-audio input[type=file]"), 120, "the audio upload input")[0]
    browser.execute_script("arguments[0].style.display='block';"
                           "arguments[0].style.visibility='visible';", file_input)
    file_input.send_keys(row["wav"])
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#mowe-audio audio, "
                                             "#mowe-audio [data-testid='waveform-Audio']"),
               120, "the uploaded clip to show")
    box = browser.find_element(By.CSS_SELECTOR, "#mowe-instruction textarea")
    box.clear()
    box.send_keys(row["instruction"])
    browser.find_element(By.CSS_SELECTOR, "#mowe-ask").click()

    def answer():
        value = browser.find_element(By.CSS_SELECTOR,
                                     "#mowe-answer textarea").get_attribute("value")
        return value if value else None

    shown = wait_until(answer, 300, "the answer")
    screenshot = tmp_path / "demo.png"
    browser.save_screenshot(str(screenshot))
    with open(screenshot, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(screenshot) > 10_000
    assert shown.strip() == row["hyp"].strip()
    note = wait_until(lambda: browser.find_element(By.CSS_SELECTOR, "#mowe-routing-note").text,
                      60, "the routing note")
    assert "router" in note and "E" in note
    chart = browser.find_elements(By.CSS_SELECTOR, "#mowe-routing canvas, #mowe-routing svg")
    assert chart, "no routing bar chart on the page"


def test_the_page_asks_for_the_api_key(tiny_package):
    """With --api_key the page is behind Gradio's login: the key is the password."""
    import httpx

    port = free_port()
    process = Process(["-m", "mowe.inference.web_demo", "--model", str(tiny_package["package"]),
                       "--port", str(port), "--stop_after", "300", "--api_key", "k3y"])
    try:
        process.wait_for("demo of ")
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/config", timeout=30).status_code == 401
        wrong = httpx.post(f"{url}/login", data={"username": "me", "password": "nope"},
                           timeout=30)
        assert wrong.status_code >= 400
        with httpx.Client(timeout=30) as client:
            right = client.post(f"{url}/login", data={"username": "me", "password": "k3y"})
            assert right.status_code == 200, right.text
            assert client.get(f"{url}/config").status_code == 200
    finally:
        process.stop()
