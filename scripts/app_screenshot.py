"""Screenshot of the web demo's finished result page, taken in a real headless browser.

    apt-get install -y chromium chromium-driver      # Debian's browser and its driver
    pip install -e '.[app]' selenium==4.51.0
    python scripts/app_screenshot.py --checkpoint runs/shapes/model --out docs/app_screenshot.png

Starts `mraa_jax.app` in this process on a free port of 127.0.0.1, opens it in headless Chromium
(the system's /usr/bin/chromium through /usr/bin/chromedriver, a fresh profile, nothing fetched),
presses "Use the example" and then "Animate", waits for the result video, shows every video at
its middle frame (paused, so the picture does not depend on timing) and saves a PNG of the page.
Not part of CI: a manual check that the page works in a browser, and the README's picture.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Every video at its middle frame, paused; true once all have loaded their data.
PAUSE_VIDEOS = """
const videos = Array.from(document.querySelectorAll('video'));
if (videos.length < 3 || videos.some(v => v.readyState < 2 || !v.duration)) return false;
for (const v of videos) { v.loop = false; v.pause(); v.currentTime = v.duration / 2; }
return true;
"""
# The page's full height (to the footer's bottom) and what the window adds around the viewport.
PAGE_HEIGHT = """
const bottom = Math.max(...Array.from(document.querySelectorAll('footer, #details')).map(e => e.getBoundingClientRect().bottom));
return [Math.ceil(bottom + window.scrollY + 16), window.outerHeight - window.innerHeight];
"""
VIDEOS_SEEKED = "return Array.from(document.querySelectorAll('video')).every(v => !v.seeking && v.readyState >= 2);"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a model directory, or an original .pth with --config")
    parser.add_argument("--config", help="configs/<name>.py or the original's .yaml; needed with a .pth checkpoint")
    parser.add_argument("--out", default="docs/app_screenshot.png", help="the PNG to write")
    parser.add_argument("--mode", default="relative", help="the animation mode to pick")
    parser.add_argument("--best_frame", action="store_true", help="tick 'Find the best frame'")
    parser.add_argument("--browser", default="/usr/bin/chromium")
    parser.add_argument("--driver", default="/usr/bin/chromedriver")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the result")
    return parser.parse_args(argv)


def browser(args, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = args.browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={args.width},{args.height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=args.driver), options=options)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from mraa_jax.app import CSS, build_app, load

    model = load(args.checkpoint, args.config)
    demo = build_app(model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False, css=CSS
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="mraa-jax-chromium-") as profile:
            driver = browser(args, profile)
            try:
                wait = WebDriverWait(driver, args.timeout)
                driver.get(f"http://127.0.0.1:{port}/")
                wait.until(ec.element_to_be_clickable((By.ID, "example-button"))).click()
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#source-image img"))
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#driving-video video"))
                driver.find_element(By.XPATH, f"//label[.//input[@value='{args.mode}']]").click()
                if args.best_frame:
                    driver.find_element(By.XPATH, "//label[contains(., 'Find the best frame')]//input").click()
                start = time.perf_counter()
                driver.find_element(By.ID, "animate-button").click()
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-video video"))
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-video video"))
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#details textarea").get_attribute("value"))
                print(f"result after {time.perf_counter() - start:.1f} s", flush=True)
                wait.until(lambda d: d.execute_script(PAUSE_VIDEOS))
                wait.until(lambda d: d.execute_script(VIDEOS_SEEKED))
                height, chrome = driver.execute_script(PAGE_HEIGHT)
                driver.set_window_size(args.width, max(args.height, int(height + chrome)))
                driver.execute_script("window.scrollTo(0, 0)")
                time.sleep(1.0)  # the resized page's layout and the seeked frames painted
                driver.save_screenshot(str(out))
            finally:
                driver.quit()
    finally:
        demo.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
