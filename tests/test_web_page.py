"""The web page in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against a
real server: upload, wait, see the overlay and the table, download."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from server_helpers import MODEL, Server, write_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                  "(apt-get install -y chromium chromium-driver)")
#: where the page's screenshot goes when CYTOLENS_SCREENSHOT names a file (docs/web_page.png is made so)
SCREENSHOT_ENV = "CYTOLENS_SCREENSHOT"


@pytest.fixture()
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1200,1100"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def test_upload_wait_overlay_table_download(browser, tmp_path):
    import os

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server = Server(tmp_path / "data", "--workers", "1")
    try:
        (image,) = write_images(tmp_path / "in", 1, shape=(160, 160), first_seed=7)
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) >= 1)
        Select(browser.find_element(By.ID, "model")).select_by_value(MODEL)
        browser.find_element(By.ID, "file-input").send_keys(str(image))
        browser.find_element(By.ID, "submit").click()
        job = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".job[data-state='done']")))
        wait.until(lambda d: d.find_element(By.ID, "overlay-img").get_attribute("naturalWidth") not in (None, "0"))
        assert int(browser.find_element(By.ID, "overlay-img").get_attribute("naturalWidth")) == 160
        wait.until(lambda d: d.find_element(By.ID, "cells").get_attribute("data-rows"))
        rows = int(browser.find_element(By.ID, "cells").get_attribute("data-rows"))
        assert rows >= 3 and len(browser.find_elements(By.CSS_SELECTOR, "#cells tr")) == rows + 1
        assert browser.find_element(By.ID, "error").text == ""
        links = {a.text: a for a in job.find_elements(By.CSS_SELECTOR, "a.download")}
        assert set(links) == {"cells7_cells.csv", "cells7_labels.tif", "cells7_overlay.png"}
        if os.environ.get(SCREENSHOT_ENV):
            browser.save_screenshot(os.environ[SCREENSHOT_ENV])
        links["cells7_cells.csv"].click()
        target = browser.downloads / "cells7_cells.csv"
        deadline = time.monotonic() + 20
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        import httpx

        job_id = job.get_attribute("id").removeprefix("job-")
        served = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/cells7_cells.csv").content
        assert target.read_bytes() == served and served.count(b"\n") == rows + 1
    finally:
        server.kill()


def test_page_shows_the_servers_error(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(tmp_path / "data", "--token", "abc")
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "token" in d.find_element(By.ID, "error").text)  # models need the token
        browser.find_element(By.ID, "token").send_keys("abc")
        browser.find_element(By.ID, "diameter").click()  # the token field's change event loads the models
        wait.until(lambda d: d.find_element(By.ID, "error").text == "")
        # a file dropped on the drop zone (a real drop event with a DataTransfer), named like a PNG but not one
        browser.execute_script("""
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array([110, 111, 112, 101])], "fake.png", {type: "image/png"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data}));""")
        assert browser.find_element(By.ID, "chosen").text == "fake.png"
        browser.find_element(By.ID, "submit").click()
        wait.until(lambda d: "not an image" in d.find_element(By.ID, "error").text)
    finally:
        server.kill()


def test_screenshot_committed():
    assert (Path(__file__).resolve().parents[1] / "docs" / "web_page.png").stat().st_size > 10_000
