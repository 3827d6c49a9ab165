"""The web app in a real browser: headless Debian Chromium driven by Selenium through Debian's chromedriver.

The app runs in this process on a free loopback port with the tiny model (``LocalBackend``), whose
``calls`` counts every ``model.generate`` it starts, so "the model was not asked" is counted where the
model would run. Screenshots are kept in the test's tmp folder and, when ``$CBT_LLM_ARTIFACTS`` is set,
copied into that folder (CI keeps it; it is never committed).

Selenium and not Playwright: the driver comes from the same Debian source package as the browser
(always the matching version), nothing else is downloaded, and the wheel is 35 MB against 165 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from app_helpers import make_report
from helpers import SAMPLE_SIZE

from cbt_llm.app import AppConfig, build_app, launch_app
from cbt_llm.chat import GenerationSettings, LocalBackend
from cbt_llm.crisis import crisis_resources
from cbt_llm.data.prompts import CBT_STEPS
from cbt_llm.models.serve import free_port
from cbt_llm.models.tiny import TINY_MODEL_NAME

pytestmark = pytest.mark.slow  # starts a server and a browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1280,1100")
NORMAL = "我最近总是睡不好，一想到考试就很担心"
CRISIS = "我不想活了，药都准备好了"
WAIT = 120  # seconds for a turn on a busy 2-core machine; the tests wait for events, never measure time

BOT_TEXTS = "return [...document.querySelectorAll('#chatbot [data-testid=\"bot\"]')].map(e => e.innerText);"
# Records the length of the newest bot message at every change of the chat, to see the answer grow.
WATCH_STREAM = """
window.__lengths = [];
const chat = document.querySelector('#chatbot');
new MutationObserver(() => {
  const bots = chat.querySelectorAll('[data-testid="bot"]');
  if (bots.length) window.__lengths.push(bots[bots.length - 1].innerText.length);
}).observe(chat, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The app with the tiny model on 127.0.0.1:free port; yields (url, back-end, trace file); always closed."""
    folder = tmp_path_factory.mktemp("app")
    trace = folder / "trace.jsonl"
    backend = LocalBackend(model_name_or_path=TINY_MODEL_NAME, device="cpu",
                           settings=GenerationSettings(max_new_tokens=96, temperature=0.8, seed=0))
    report = make_report(folder / "report", every_metric=True)  # the demo's full table: 20 columns
    app = build_app(AppConfig(trace_file=str(trace), report_dir=str(report)), backend)
    port = free_port()
    try:
        launch_app(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
        yield f"http://127.0.0.1:{port}/", backend, trace
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver; always quit."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium and chromium-driver (see .ci/run)")
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition, what: str, timeout: float = WAIT):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def trace_lines(trace: Path) -> list[dict]:
    return [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()] if trace.is_file() else []


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Save a full-window screenshot in the test's tmp folder (and in $CBT_LLM_ARTIFACTS when set)."""
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("CBT_LLM_ARTIFACTS"):
        folder = Path(os.environ["CBT_LLM_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    return path


def send(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#chat-input textarea").send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "#chat-send").click()


def open_tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    wait_until(lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == label],
               f"the tab {label}")[0].click()


def test_chat_streams_a_normal_turn_and_answers_a_crisis_without_the_model(app_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, backend, trace = app_server
    browser.get(url)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#chat-input textarea"), "the chat input")
    banner = browser.find_element(By.ID, "cbt-notice").text
    assert "不能替代专业的心理咨询" in banner and "12356" in banner  # the notice with a crisis line, above the tabs

    browser.execute_script(WATCH_STREAM)
    send(browser, NORMAL)
    wait_until(lambda: len(trace_lines(trace)) == 1, "the first turn to finish")
    answer = wait_until(lambda: (browser.execute_script(BOT_TEXTS) or [""])[-1], "the answer on the page")
    lengths = browser.execute_script("return window.__lengths;")
    growing = sorted({n for n in lengths if 0 < n < len(answer)})
    assert growing, f"the answer appeared in one piece (lengths seen: {lengths})"  # it streamed
    assert trace_lines(trace)[0] | {"reasons": None} == {
        "turn": 1, "level": "none", "reasons": None, "model_called": True, "backend_calls": 1, "messages": 2,
        "error": None}
    assert backend.calls == 1

    send(browser, CRISIS)
    wait_until(lambda: len(trace_lines(trace)) == 2, "the crisis turn to finish")
    reply = wait_until(lambda: len(browser.execute_script(BOT_TEXTS)) == 2 and browser.execute_script(BOT_TEXTS)[-1],
                       "the crisis reply on the page")
    assert "12356" in reply and "听到你这样说，我真的很担心你" in reply
    assert backend.calls == 1, "the model was asked on a crisis turn"
    assert trace_lines(trace)[1]["level"] == "crisis" and trace_lines(trace)[1]["backend_calls"] == 0
    assert "我不想活了" not in trace.read_text(encoding="utf-8")  # the trace keeps decisions, not words
    shot = screenshot(browser, tmp_path, "app-chat-crisis.png")
    assert shot.stat().st_size > 10_000

    browser.find_element(By.CSS_SELECTOR, "#chat-reset").click()
    wait_until(lambda: not browser.execute_script(BOT_TEXTS), "the conversation to clear")
    send(browser, NORMAL)  # a fresh conversation: the model sees only the system line and this turn
    wait_until(lambda: len(trace_lines(trace)) == 3, "the turn after reset")
    assert trace_lines(trace)[2]["messages"] == 2 and trace_lines(trace)[2]["turn"] == 1

    browser.find_element(By.CSS_SELECTOR, "#chatbot button[aria-label='Clear']").click()  # the chat's own bin
    wait_until(lambda: not browser.execute_script(BOT_TEXTS), "the bin to clear the conversation")
    send(browser, NORMAL)
    wait_until(lambda: len(trace_lines(trace)) == 4, "the turn after the bin")
    assert trace_lines(trace)[3]["messages"] == 2  # the hidden history went with the shown one


def test_explorer_shows_a_sample_record_with_its_five_steps_the_report_and_the_switch_relabels(app_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _, _ = app_server
    browser.get(url)
    open_tab(browser, "数据集")
    header = wait_until(lambda: browser.find_elements(By.ID, "explore-header"), "the record header")[0].text
    assert "总是担心家人会出事，是不是我太焦虑了？" in header and "sample-001" in header and "灾难化" in header
    answer = browser.find_element(By.ID, "explore-answer").text
    for number, step in enumerate(CBT_STEPS, 1):
        assert f"{number} {step.name_zh}" in answer  # each step is a labelled, coloured piece of the answer
    shot = screenshot(browser, tmp_path, "app-explorer.png")
    assert shot.stat().st_size > 10_000

    browser.find_element(By.CSS_SELECTOR, "#explore-keyword textarea").send_keys("考研\n")
    wait_until(lambda: "考研" in browser.find_element(By.ID, "explore-header").text, "a record about 考研")
    assert f"共 {SAMPLE_SIZE} 条记录" in browser.find_element(By.ID, "explore-count").text

    open_tab(browser, "评估报告")
    table = wait_until(lambda: browser.find_elements(By.ID, "report-table"), "the report table")[0].text
    assert "cut-60" in table and "CBT structure" in table
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#report-plots img")) == 2, "the two plots")
    browser.execute_script("document.querySelector('#report-plots').scrollIntoView();")
    screenshot(browser, tmp_path, "app-report.png")

    open_tab(browser, "数据集")
    browser.find_element(By.XPATH, "//*[@id='cbt-language']//label[contains(., 'English')]").click()
    wait_until(lambda: "988" in browser.find_element(By.ID, "cbt-notice").text, "the English notice")
    wait_until(lambda: "1 Validation and empathy" in browser.find_element(By.ID, "explore-answer").text,
               "English step names")
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")] == [
        "Chat", "Dataset", "Evaluation report"]
    screenshot(browser, tmp_path, "app-explorer-en.png")


# Each report cell's text and on how many lines it is laid out.
CELL_LINES = """
return [...document.querySelectorAll('#report-table td')].map(td => {
  const range = document.createRange(); range.selectNodeContents(td);
  return [td.innerText, new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
});
"""


def test_the_report_table_keeps_each_number_on_one_line_at_1400_px(app_server, browser, tmp_path):
    url, _, _ = app_server
    browser.set_window_size(1400, 1100)
    browser.set_window_size(2800 - browser.execute_script("return window.innerWidth;"), 1100)  # 1400 inside
    try:
        browser.get(url)
        open_tab(browser, "评估报告")
        wait_until(lambda: browser.execute_script(CELL_LINES), "the report table")
        cells = browser.execute_script(CELL_LINES)
        assert len(cells) == 2 * 20 and "42.99" in [text for text, _ in cells]
        assert [text for text, lines in cells if lines != 1] == []  # no figure is broken over two lines
        table = browser.execute_script("const t = document.querySelector('#report-table table');"
                                       "return [t.scrollWidth, t.clientWidth];")
        screenshot(browser, tmp_path, "app-report-1400.png")
        assert table[0] <= table[1] + 1  # and at 1400 px the whole table fits: nothing to scroll to
    finally:
        browser.set_window_size(1280, 1100)


# ------------------------------------------------------------------- model and record text as text
FINDAHELPLINE = next(r.contact for r in crisis_resources("zh") if r.contact.startswith("https://"))


class _Noted(BaseHTTPRequestHandler):
    """Answers 204 to any request and notes its path on the server."""

    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


class Tracker(ThreadingHTTPServer):
    """A loopback server standing for an outside host: it notes every request a page makes to it."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Noted)
        self.paths: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class HostileBackend:
    """A back-end whose answer is HTML, Markdown images and a form pointing at ``tracker``."""

    def __init__(self, tracker_url: str):
        self.answer = (f'<form action="{tracker_url}/form"><input name="q"><button>go</button></form> '
                       f'![pixel]({tracker_url}/md.png) <img src="{tracker_url}/img.png"> <b>bold</b> '
                       f'[ref]\n\n[ref]: {tracker_url}/ref.png\n\n![again][ref] ANSWER-END')
        self.calls, self.settings, self.context_tokens, self.count_tokens = 0, GenerationSettings(64), 4096, len

    def describe(self, public: bool = False) -> str:
        return "model hostile"

    def __call__(self, messages):
        self.calls += 1
        yield from (self.answer[:30], self.answer[30:])


@pytest.fixture(scope="module")
def text_app():
    """The app with HostileBackend and one hostile dataset record; yields (url, tracker)."""
    import cbt_llm.app.explore_tab as explore_tab

    tracker = Tracker()
    record = {"id": "hostile-1", "question": f"<img src={tracker.url}/q.png> QUESTION-END", "split": "train",
              "description": f"![d]({tracker.url}/d.png) <form><input></form>", "keywords": ["<b>k</b>"],
              "distortions": [], "response": f'<img src="{tracker.url}/r.png"> 先说说发生了什么。', "steps": {}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(explore_tab, "load_records", lambda dataset: [record])
        app = build_app(AppConfig(), HostileBackend(tracker.url))
    port = free_port()
    try:
        launch_app(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
        yield f"http://127.0.0.1:{port}/", tracker
    finally:
        app.close()
        tracker.close()


def test_the_chat_shows_model_html_and_images_as_text_and_fetches_nothing(text_app, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, tracker = text_app
    browser.get(url)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#chat-input textarea"), "the chat input")
    send(browser, NORMAL)
    shown = wait_until(lambda: "ANSWER-END" in (browser.execute_script(BOT_TEXTS) or [""])[-1]
                       and browser.execute_script(BOT_TEXTS)[-1], "the answer")
    assert "<form" in shown and "![pixel](" in shown and "<img src=" in shown and "<b>bold</b>" in shown
    elements = browser.execute_script("return [...document.querySelectorAll('#chatbot form, #chatbot input, "
                                      "#chatbot img, #chatbot b')].map(e => e.outerHTML);")
    assert elements == []
    time.sleep(1)  # time for an image request, had there been an image
    assert tracker.paths == []
    screenshot(browser, tmp_path, "app-chat-as-text.png")


def test_the_chinese_crisis_reply_links_to_findahelpline(text_app, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = text_app
    browser.get(url)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#chat-input textarea"), "the chat input")
    send(browser, CRISIS)
    wait_until(lambda: "12356" in (browser.execute_script(BOT_TEXTS) or [""])[-1], "the crisis reply")
    links = browser.execute_script(
        "const bots = document.querySelectorAll('#chatbot [data-testid=\"bot\"]');"
        "return [...bots[bots.length - 1].querySelectorAll('a')].map(a => [a.getAttribute('href'), a.innerText]);")
    assert links == [[FINDAHELPLINE, FINDAHELPLINE]]  # the address, not the region label after it
    screenshot(browser, tmp_path, "app-crisis-link.png")


def test_the_dataset_tab_shows_record_html_as_text(text_app, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, tracker = text_app
    browser.get(url)
    open_tab(browser, "数据集")
    header = wait_until(lambda: "QUESTION-END" in browser.find_element(By.ID, "explore-header").text
                        and browser.find_element(By.ID, "explore-header").text, "the record header")
    assert f"<img src={tracker.url}/q.png>" in header and "<form><input></form>" in header and "<b>k</b>" in header
    assert f'<img src="{tracker.url}/r.png">' in browser.find_element(By.ID, "explore-answer").text
    elements = browser.execute_script("return [...document.querySelectorAll('#explore-header img, #explore-header "
                                      "form, #explore-answer img')].map(e => e.outerHTML);")
    assert elements == []
    time.sleep(1)
    assert tracker.paths == []
    screenshot(browser, tmp_path, "app-dataset-as-text.png")
