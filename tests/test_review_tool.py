"""The operators' review tool (server/review/) against a real moderation server on loopback, a
real image host, and a real browser (Debian's chromium driven by Selenium through
chromium-driver, headless).

The browser test loads the queue, judges with the keyboard (one image, a near-duplicate group,
a whole post, undo, skip) and checks the rows in the audit store; it saves screenshots at
desktop and phone width under var/test-artifacts/. The HTTP tests cover login, CSRF, headers,
the image path (SSRF rules, re-encoding) and two operators working at once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.cookiejar
import io
import json
import random
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from moderation_api.v1 import moderation_pb2 as pb
from review.app import ReviewApp
from server.audit.records import AuditReason, AuditRecord
from server.config import Config
from tests.audit_support import PG_BASE_URL, pg_schema, with_schema
from tests.harness import ServerThread, make_config

TOKEN = "correct-horse-battery-staple"
ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


# -- the scene ---------------------------------------------------------------------------------


def poster(seed: int, base: tuple[int, int, int], size: tuple[int, int] = (480, 360), quality: int = 92) -> bytes:
    """A JPEG with a layout of shapes fixed by `seed`: the same seed at another size or quality
    is a near-duplicate (a repost), another seed is a different image. The fake model scores by
    mean colour, so `base` decides the class."""
    rng = random.Random(seed)
    img = Image.new("RGB", (480, 360), base)
    draw = ImageDraw.Draw(img)
    dark = tuple(max(0, c - 90) for c in base)
    light = tuple(min(255, c + 60) for c in base)
    for _ in range(7):
        x, y = rng.randrange(0, 400), rng.randrange(0, 280)
        w, h = rng.randrange(40, 200), rng.randrange(40, 160)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=dark if rng.random() < 0.6 else light)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


RED, BLUE, AMBER, GREEN = (205, 40, 50), (40, 60, 200), (190, 160, 40), (40, 185, 70)
XSS_POST = '<img src=x onerror="window.__xss=1">'
XSS_IMAGE = '"><script>window.__xss=2</script>'


class ReviewThread:
    """The review app on an ephemeral loopback port, in a thread with its own event loop."""

    def __init__(self, config: Config):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="review-loop", daemon=True)
        self.thread.start()
        self.app = ReviewApp(config)
        port = asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        self.base = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def review_config(server: ServerThread, base: Config, **review) -> Config:
    import dataclasses

    settings = {"port": 0, "target": server.target, "token": TOKEN, "lease_s": 120, **review}
    return dataclasses.replace(base, review=dataclasses.replace(base.review, **settings))


def classify(server: ServerThread, post_id: str, images: list[pb.ImageInput]) -> pb.ClassifyResponse:
    with server.channel() as channel:
        response = server.stub(channel).Classify(pb.ClassifyRequest(post_id=post_id, images=images), timeout=20)
    assert all(r.status.code == pb.IMAGE_OK for r in response.results), response
    return response


@pytest.fixture
def scene(model_repo, tmp_path, image_host):
    """A server that records flagged images and every confident ham PASS, fed with: a campaign
    (one poster reposted in three posts at other sizes and qualities), a post of two different
    images, a post whose ids are HTML, a sampled pass and an image sent inline."""
    config = make_config(
        model_repo,
        tmp_path / "audit.sqlite3",
        allow=(image_host.allow_entry,),
        audit={"sample_rate": 0.0, "class_sample_rates": "ham=1.0", "drift_interval_s": 0},
    )
    server = ServerThread(config).start()
    url = image_host.url
    image_host.add("/campaign-a.jpg", poster(1, RED))
    image_host.add("/campaign-b.jpg", poster(1, RED, (400, 300), quality=70))
    image_host.add("/campaign-c.jpg", poster(1, RED, (520, 390), quality=80))
    image_host.add("/id-card.jpg", poster(2, BLUE))
    image_host.add("/mixed-1.jpg", poster(3, AMBER))
    image_host.add("/mixed-2.jpg", poster(4, BLUE))
    image_host.add("/odd.jpg", poster(5, RED))
    image_host.add("/park.jpg", poster(6, GREEN))
    classify(
        server,
        "post-1",
        [
            pb.ImageInput(id="campaign-a", url=url("/campaign-a.jpg")),
            pb.ImageInput(id="id-card", url=url("/id-card.jpg")),
        ],
    )
    classify(server, "post-2", [pb.ImageInput(id="campaign-b", url=url("/campaign-b.jpg"))])
    classify(server, "post-3", [pb.ImageInput(id="campaign-c", url=url("/campaign-c.jpg?utm=<b>x</b>"))])
    classify(
        server,
        "post-4",
        [pb.ImageInput(id="mixed-1", url=url("/mixed-1.jpg")), pb.ImageInput(id="mixed-2", url=url("/mixed-2.jpg"))],
    )
    classify(server, XSS_POST, [pb.ImageInput(id=XSS_IMAGE, url=url("/odd.jpg"))])
    classify(server, "post-6", [pb.ImageInput(id="park", url=url("/park.jpg"))])
    classify(server, "post-7", [pb.ImageInput(id="inline", content=poster(7, RED))])
    server.service.audit.flush()
    server.store = server.service.audit_components.store
    server.config = config
    yield server
    server.stop()


def records_of(server, post_id: str) -> dict:
    return {r.image_id: r for r in server.store.post_records(post_id, 50)}


# -- an operator over HTTP ---------------------------------------------------------------------


class Operator:
    """A logged-in session, as a browser would hold it (cookie + CSRF token)."""

    def __init__(self, base: str, operator: str, token: str = TOKEN):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, _, page = self.request(
            "POST",
            "/login",
            urllib.parse.urlencode({"operator": operator, "token": token}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.page = page.decode()
        match = re.search(r'name="csrf-token" content="([^"]+)"', self.page)
        self.csrf = match.group(1) if match else ""
        self.login_status = status

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def api(self, method: str, path: str, payload=None, csrf: bool = True, headers: dict | None = None):
        all_headers = {
            "Content-Type": "application/json",
            **({"X-CSRF-Token": self.csrf} if csrf else {}),
            **(headers or {}),
        }
        status, _, body = self.request(
            method, path, None if payload is None else json.dumps(payload).encode(), all_headers
        )
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body.decode(errors="replace")


@pytest.fixture
def review(scene):
    running = ReviewThread(review_config(scene, scene.config))
    running.store = scene.store
    yield running
    running.stop()


def test_login_csrf_and_headers(review):
    anonymous = urllib.request.build_opener()
    with anonymous.open(review.base + "/", timeout=10) as response:  # redirected to the login form
        assert response.url.endswith("/login") and b'name="token"' in response.read()
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    with pytest.raises(urllib.error.HTTPError) as info:
        anonymous.open(review.base + "/api/queue", timeout=10)
    assert info.value.code == 401

    started = time.monotonic()
    wrong = Operator(review.base, "mallory", token="guess-guess-guess")
    assert wrong.login_status == 401 and not wrong.csrf and time.monotonic() - started >= 0.9
    assert "Wrong token." in wrong.page and 'value="mallory"' in wrong.page
    bad_name = Operator(review.base, "<b>eve</b>")
    assert bad_name.login_status == 400 and "&lt;b&gt;eve&lt;/b&gt;" in bad_name.page and "<b>eve" not in bad_name.page

    alice = Operator(review.base, "alice")
    assert alice.login_status == 200 and alice.csrf
    status, queue = alice.api("GET", "/api/queue")
    assert status == 200 and queue["operator"] == "alice"
    first = queue["items"][0]["record_id"]
    # A POST without the CSRF token, or from another origin, changes nothing.
    assert alice.api("POST", "/api/verdicts", {"record_ids": [first], "label": "ham"}, csrf=False)[0] == 403
    assert (
        alice.api(
            "POST", "/api/verdicts", {"record_ids": [first], "label": "ham"}, headers={"Origin": "http://evil.test"}
        )[0]
        == 403
    )
    assert scene_verdict(review, first) is None
    # A record that is not in this operator's hands cannot be judged through the tool.
    assert alice.api("POST", "/api/verdicts", {"record_ids": ["not-mine"], "label": "ham"})[0] == 409
    # A label outside the model's classes is the service's INVALID_ARGUMENT.
    status, body = alice.api("POST", "/api/verdicts", {"record_ids": [first], "label": "violence"})
    assert status == 400 and "not a class of model" in body["error"]
    status, body = alice.api("POST", "/api/verdicts", {"record_ids": [first], "label": "ham"})
    assert status == 200 and body["results"] == [{"record_id": first, "outcome": "applied", "message": ""}]
    assert scene_verdict(review, first) == ("ham", "alice")
    assert alice.api("POST", "/api/logout", {})[0] == 200
    assert alice.api("GET", "/api/queue")[0] == 401


def scene_verdict(review: ReviewThread, record_id: str):
    (row,) = review.store.get([record_id])
    return None if row.verdict_label is None else (row.verdict_label, row.verdict_operator)


def test_images_are_fetched_by_the_tool_safely_and_re_encoded(scene, review, image_host, trap):
    store = scene.store
    now = time.time()
    html = image_host.add("/page.jpg", b"<!doctype html><script>alert(1)</script>", content_type="image/jpeg")
    changed = image_host.add("/changed.jpg", poster(9, RED))
    extra = [  # records as an attacker could have left them: URLs that must not be followed now
        AuditRecord(
            request_id="r",
            post_id="evil",
            image_id="trap",
            url=trap.url("127.0.0.1", "/x.jpg"),
            content_sha256="0" * 64,
            scores={"ham": 0.1, "sexual": 0.8, "personal_info": 0.1},
            top_class="sexual",
            decision="REVIEW",
            reason=AuditReason.FLAGGED,
            model_name="moderation",
            model_version="1",
            created_at=now - 3600,
            record_id="evil-trap",
        ),
        AuditRecord(
            request_id="r",
            post_id="evil",
            image_id="html",
            url=html,
            content_sha256="1" * 64,
            scores={"ham": 0.1, "sexual": 0.8, "personal_info": 0.1},
            top_class="sexual",
            decision="REVIEW",
            reason=AuditReason.FLAGGED,
            model_name="moderation",
            model_version="1",
            created_at=now - 3600,
            record_id="evil-html",
        ),
        AuditRecord(
            request_id="r",
            post_id="evil",
            image_id="changed",
            url=changed,
            content_sha256="2" * 64,
            scores={"ham": 0.1, "sexual": 0.8, "personal_info": 0.1},
            top_class="sexual",
            decision="REVIEW",
            reason=AuditReason.FLAGGED,
            model_name="moderation",
            model_version="1",
            created_at=now - 3600,
            record_id="evil-changed",
        ),
    ]
    store.write(extra)
    alice = Operator(review.base, "alice")
    status, queue = alice.api("GET", "/api/queue")
    assert status == 200
    items = {i["record_id"]: i for i in queue["items"]}
    assert items["evil-trap"]["image"]["ok"] is False
    assert "DESTINATION_NOT_ALLOWED" in items["evil-trap"]["image"]["error"]
    assert trap.accepted() == []
    assert items["evil-html"]["image"] == {
        "ok": False,
        "changed": True,
        "width": 0,
        "height": 0,
        "error": items["evil-html"]["image"]["error"],
    }
    assert "not an allowed image format" in items["evil-html"]["image"]["error"]
    assert items["evil-changed"]["image"]["ok"] and items["evil-changed"]["image"]["changed"]
    inline = next(i for i in queue["items"] if i["image_id"] == "inline")
    assert not inline["image"]["ok"] and "inline" in inline["image"]["error"]

    for record_id in ("evil-trap", "evil-html"):
        status, _, body = alice.request("GET", f"/img/{record_id}")
        assert status == 404 and b"<script>" not in body
    status, headers, body = alice.request("GET", "/img/evil-changed")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body.startswith(b"\xff\xd8\xff")
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
    assert body != poster(9, RED)  # re-encoded here, not the origin's bytes
    # Only records handed to this session are served: the tool is no proxy for arbitrary ids.
    assert alice.request("GET", "/img/someone-elses")[0] == 404
    bob = Operator(review.base, "bob")
    assert bob.request("GET", "/img/evil-changed")[0] == 404


def test_a_skip_is_released_and_not_handed_back(scene, review):
    alice = Operator(review.base, "alice")
    _, queue = alice.api("GET", "/api/queue?reason=flagged")
    first = queue["groups"][0]["members"]
    assert alice.api("POST", "/api/skip", {"record_ids": first})[1]["record_ids"] == first
    _, again = alice.api("GET", "/api/queue?reason=flagged")
    assert not set(first) & {i["record_id"] for i in again["items"]}
    assert all(r.lease_owner is None for r in scene.store.get(first))
    # Free for another operator.
    bob = Operator(review.base, "bob")
    _, theirs = bob.api("GET", "/api/queue?reason=flagged")
    assert set(first) <= {i["record_id"] for i in theirs["items"]}


def test_filters_progress_and_bad_input(scene, review):
    alice = Operator(review.base, "alice")
    status, queue = alice.api("GET", "/api/queue?class=personal_info")
    assert status == 200
    matching = {i["image_id"] for i in queue["items"] if not i["same_post_only"]}
    assert matching == {"id-card", "mixed-2"}
    # The rest of those posts comes along, marked, so a post can be judged whole.
    assert {i["image_id"] for i in queue["items"] if i["same_post_only"]} == {"campaign-a", "mixed-1"}
    _, sampled = alice.api("GET", "/api/queue?reason=sampled")
    assert [i["image_id"] for i in sampled["items"]] == ["park"]
    # What the new filter no longer shows is handed back at once.
    assert records_of(scene, "post-1")["id-card"].lease_owner is None
    _, later = alice.api("GET", f"/api/queue?after={time.time() + 3600}")
    assert later["items"] == [] and records_of(scene, "post-6")["park"].lease_owner is None
    _, today = alice.api("GET", f"/api/queue?after={time.time() - 3600}&before={time.time() + 60}&version=1")
    assert len(today["items"]) == 9

    status, progress = alice.api("GET", "/api/progress?since=0")
    assert status == 200 and progress == {"done": 0, "done_all": 0, "left": 9}
    assert alice.api("GET", "/api/progress?since=0&reason=sampled")[1]["left"] == 1
    for bad in ("/api/queue?reason=bogus", "/api/queue?after=soon", "/api/progress?since=yesterday"):
        assert alice.api("GET", bad)[0] == 400, bad
    assert alice.api("POST", "/api/verdicts", {"record_ids": "x", "label": "ham"})[0] == 400
    assert alice.api("POST", "/api/skip", {"record_ids": []})[0] == 400


# -- two operators at once -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def busy_server(request, model_repo, tmp_path, image_host):
    """A server whose store holds 60 flagged records in 30 two-image posts, on either store."""
    if request.param == "postgresql":
        schema_cm = pg_schema()
        audit_url = with_schema(PG_BASE_URL, schema_cm.__enter__())
    else:
        schema_cm, audit_url = None, f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    config = make_config(
        model_repo,
        tmp_path / "unused.sqlite3",
        allow=(image_host.allow_entry,),
        audit={"url": audit_url, "drift_interval_s": 0},
    )
    server = ServerThread(config).start()
    image_host.add("/x.jpg", poster(11, RED))
    now = time.time()
    server.service.audit_components.store.write(
        [
            AuditRecord(
                request_id=f"r{i // 2}",
                post_id=f"p{i // 2}",
                image_id=f"i{i % 2}",
                url=image_host.url("/x.jpg"),
                content_sha256="",
                scores={"ham": 0.1, "sexual": 0.8, "personal_info": 0.1},
                top_class="sexual",
                decision="REVIEW",
                reason=AuditReason.FLAGGED,
                model_name="moderation",
                model_version="1",
                created_at=now - 100 + i // 2,
                record_id=f"rec-{i:03d}",
            )
            for i in range(60)
        ]
    )
    server.config = config
    yield server
    server.stop()
    if schema_cm is not None:
        schema_cm.__exit__(None, None, None)


def test_two_operators_at_once_never_get_the_same_record(busy_server):
    review = ReviewThread(review_config(busy_server, busy_server.config, batch_size=4, duplicate_distance=-1))
    try:
        operators = [Operator(review.base, name) for name in ("alice", "bob")]
        holding: dict[str, set[str]] = {"alice": set(), "bob": set()}
        judged: dict[str, list[str]] = {"alice": [], "bob": []}
        lock = threading.Lock()
        overlaps = []

        def work(op: Operator, name: str) -> None:
            other = "bob" if name == "alice" else "alice"
            for _ in range(40):
                status, queue = op.api("GET", "/api/queue")
                assert status == 200, queue
                got = {i["record_id"] for i in queue["items"]}
                with lock:
                    holding[name] = got
                    if got & holding[other]:
                        overlaps.append(sorted(got & holding[other]))
                if not got:
                    return
                # Judge half a batch at a time so the two sessions interleave.
                for record_id in sorted(got):
                    status, body = op.api("POST", "/api/verdicts", {"record_ids": [record_id], "label": "sexual"})
                    assert status == 200, body
                    assert body["results"][0]["outcome"] == "applied", body
                    with lock:
                        holding[name].discard(record_id)
                        judged[name].append(record_id)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for future in [
                pool.submit(work, op, op_name) for op, op_name in zip(operators, ("alice", "bob"), strict=True)
            ]:
                future.result(timeout=60)
        assert overlaps == []
        assert len(judged["alice"]) + len(judged["bob"]) == 60
        assert not set(judged["alice"]) & set(judged["bob"])
        assert judged["alice"] and judged["bob"]  # both really worked
        rows = busy_server.service.audit_components.store.judged()
        by_operator = {}
        for row in rows:
            by_operator.setdefault(row.verdict_operator, set()).add(row.record_id)
        assert by_operator == {"alice": set(judged["alice"]), "bob": set(judged["bob"])}
    finally:
        review.stop()


# -- the browser -----------------------------------------------------------------------------------


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required (make system-deps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="review-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,800",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, predicate, timeout: float = 15.0, what: str = ""):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))
    except TimeoutException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "review-failure.png"))
        page = driver.find_element("tag name", "body").text
        raise AssertionError(
            f"waiting for {what}: page says {page[:1500]!r}; console {driver.get_log('browser')}; "
            f"screenshot in {ARTIFACTS / 'review-failure.png'}"
        ) from None


def current_text(driver) -> str:
    return driver.find_element("id", "current").text


def images_loaded(driver) -> bool:
    return driver.execute_script(
        "return [...document.images].every(i => i.complete && (i.naturalWidth > 0 || !i.src));"
    )


def press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def screenshot(driver, name: str, width: int, height: int, mobile: bool) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    time.sleep(0.3)
    wait_for(driver, images_loaded, what="images to load")
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


@pytest.mark.browser
def test_browser_reviews_the_queue_with_the_keyboard(scene, review, browser):
    driver = browser
    driver.get(review.base + "/")
    assert driver.current_url.endswith("/login")
    driver.find_element("name", "operator").send_keys("alice")
    driver.find_element("name", "token").send_keys(TOKEN)
    driver.find_element("css selector", "form button").click()
    wait_for(driver, lambda d: "Near-duplicates: 3 images" in current_text(d), what="the campaign group")

    # The queue: the campaign first (oldest), shown once with its size, then the rest.
    rows = driver.find_elements("css selector", "#queue-list li")
    assert "×3" in rows[0].text
    assert len(rows) == 7  # 9 records, 3 of them one group
    assert "BLOCK" in current_text(driver) and "sexual" in current_text(driver)
    bars = driver.find_elements("css selector", "#current .score")
    assert [b.find_element("css selector", ".score-name").text for b in bars] == ["ham", "personal_info", "sexual"]
    assert "Post: 2 recorded images" in current_text(driver)  # campaign-a's post also holds id-card

    screenshot(driver, "review-desktop.png", 1280, 800, mobile=False)
    screenshot(driver, "review-phone.png", 390, 844, mobile=True)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    wait_for(driver, lambda d: d.find_element("id", "done").text == "0", what="progress")

    campaign = [
        records_of(scene, p)[i]
        for p, i in (("post-1", "campaign-a"), ("post-2", "campaign-b"), ("post-3", "campaign-c"))
    ]
    # s: the whole near-duplicate group is judged sexual, one verdict per record.
    press(driver, "s")
    wait_for(driver, lambda d: "id-card" in current_text(d), what="the next image")
    rows = scene.store.get([r.record_id for r in campaign])
    assert {(r.verdict_label, r.verdict_operator) for r in rows} == {("sexual", "alice")}
    wait_for(driver, lambda d: d.find_element("id", "done").text == "3", what="progress after the group")

    # p: one image.
    press(driver, "p")
    wait_for(driver, lambda d: "mixed-1" in current_text(d), what="post-4")
    assert records_of(scene, "post-1")["id-card"].verdict_label == "personal_info"

    # h, then u: the verdict is taken back and the image is pending again.
    press(driver, "h")
    wait_for(driver, lambda d: "mixed-2" in current_text(d), what="post-4's second image")
    assert records_of(scene, "post-4")["mixed-1"].verdict_label == "ham"
    press(driver, "u")
    wait_for(driver, lambda d: "mixed-1" in current_text(d), what="undo")
    wait_for(driver, lambda d: records_of(scene, "post-4")["mixed-1"].verdict_label is None, what="retracted")
    assert records_of(scene, "post-4")["mixed-1"].lease_owner == "alice"

    # Shift+S: both images of the post, in one action.
    press(driver, "S")
    wait_for(driver, lambda d: "window.__xss" in current_text(d), what="the post with HTML ids")
    assert {r.verdict_label for r in records_of(scene, "post-4").values()} == {"sexual"}

    # HTML in ids is text on the page, never markup.
    text = current_text(driver)
    assert XSS_POST in text and XSS_IMAGE in text
    assert driver.execute_script("return window.__xss === undefined")
    assert not driver.find_elements("css selector", "#current img[src='x'], #current script")

    # n: skipped; then the sampled pass (ham) and the inline image.
    press(driver, "n")
    wait_for(driver, lambda d: "park" in current_text(d), what="the sampled pass")
    assert "sampled" in current_text(driver) and "PASS" in current_text(driver)
    press(driver, "h")
    wait_for(driver, lambda d: "sent inline" in current_text(d), what="the inline image")
    assert "Cannot show this image" in current_text(driver)
    press(driver, "s")
    # The queue is done: the tool fetches again, which releases the skipped record.
    wait_for(driver, lambda d: "Nothing to review" in current_text(d), what="the empty queue")
    (skipped,) = records_of(scene, XSS_POST).values()
    assert skipped.verdict_label is None and skipped.lease_owner is None
    assert records_of(scene, "post-6")["park"].verdict_label == "ham"
    assert records_of(scene, "post-7")["inline"].verdict_label == "sexual"
    wait_for(
        driver,
        lambda d: d.find_element("id", "done").text == "8" and d.find_element("id", "left").text == "1",
        what="final progress",
    )
    judged = list(scene.store.judged())
    assert len(judged) == 8 and {r.verdict_operator for r in judged} == {"alice"}
    # No script error and no Content-Security-Policy violation on the way.
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


# -- what the text reader found, over the image ----------------------------------------------------

PHONE_TEXT = "TEL 090-1234-5678"


def phone_poster(size: tuple[int, int]) -> tuple[bytes, tuple[float, float, float, float]]:
    """A JPEG with a phone number written on it, and the text's box as fractions of the image
    (what the reader reports for the line)."""
    img = Image.new("RGB", size, (236, 232, 220))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 40, size[0] - 40, 150), fill=(60, 90, 160))
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(str(font_path), 44) if font_path.exists() else ImageFont.load_default(44)
    left, top, right, bottom = draw.textbbox((70, 220), PHONE_TEXT, font=font)
    draw.text((70, 220), PHONE_TEXT, fill=(20, 20, 20), font=font)
    pad = 6
    box = (
        round((left - pad) / size[0], 4),
        round((top - pad) / size[1], 4),
        round((right + pad) / size[0], 4),
        round((bottom + pad) / size[1], 4),
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue(), box


@pytest.fixture
def reading_scene(model_repo, tmp_path, image_host):
    """A server whose store holds three flagged records with a reading each: a phone number
    found (fused with the CNN's personal_info), a reading cut short by its budget, and an image
    whose text gate saw nothing."""
    from model.reader.recognizers import recognize
    from model.reader.types import ReadingResult, ReadingStatus, TextLine, reading_record

    config = make_config(model_repo, tmp_path / "audit.sqlite3", allow=(image_host.allow_entry,))
    server = ServerThread(config).start()
    jpeg, box = phone_poster((600, 1000))  # portrait: held by the max height on a desktop
    image_host.add("/phone.jpg", jpeg)
    image_host.add("/long.jpg", poster(21, AMBER))
    image_host.add("/plain.jpg", poster(22, GREEN))
    (finding,) = recognize([TextLine(PHONE_TEXT, 0.97, box)]).findings
    readings = {
        "phone": ReadingResult(
            ReadingStatus.READ,
            gate_score=0.12,
            findings=(finding,),
            cue_categories=("phone",),
            lines=3,
            cnn_personal_info=0.41,
            fused=True,
        ),
        "long": ReadingResult(ReadingStatus.BUDGET_EXCEEDED, gate_score=0.6, lines=40),
        "plain": ReadingResult(ReadingStatus.SKIPPED, gate_score=0.001),
    }
    now = time.time()
    server.service.audit_components.store.write(
        [
            AuditRecord(
                request_id=f"req-{name}",
                post_id=f"post-{name}",
                image_id=name,
                url=image_host.url(f"/{name}.jpg"),
                content_sha256="",
                scores={"ham": 0.08, "sexual": 0.04, "personal_info": 0.88},
                top_class="personal_info",
                decision="REVIEW",
                reason=AuditReason.FLAGGED,
                model_name="moderation",
                model_version="1",
                created_at=now - 30 + i,
                record_id=f"rec-{name}",
                reading=reading_record(reading),
            )
            for i, (name, reading) in enumerate(readings.items())
        ]
    )
    server.config = config
    server.box = box
    server.finding = finding
    review = ReviewThread(review_config(server, config, duplicate_distance=-1))
    server.review = review
    yield server
    review.stop()
    server.stop()


def test_the_queue_passes_the_reading_to_the_page(reading_scene):
    alice = Operator(reading_scene.review.base, "alice")
    status, queue = alice.api("GET", "/api/queue")
    assert status == 200
    items = {i["image_id"]: i for i in queue["items"]}
    finding = reading_scene.finding
    assert finding.masked == "090-****-**78"
    assert items["phone"]["reading"] == {
        "status": "READ",
        "gate_score": 0.12,
        "lines": 3,
        "cues": ["phone"],
        "cnn_personal_info": 0.41,
        "fused": True,
        "findings": [
            {
                "entity": "PHONE",
                "confidence": round(finding.confidence, 4),
                "box": list(reading_scene.box),
                "masked": "090-****-**78",
                "evidence": list(finding.evidence),
            }
        ],
    }
    assert items["long"]["reading"]["status"] == "BUDGET_EXCEEDED" and items["long"]["reading"]["findings"] == []
    assert items["plain"]["reading"]["status"] == "SKIPPED"


def finding_geometry(driver) -> dict:
    """Where the first finding's box is drawn, as fractions of the displayed image, with its
    inline percentages."""
    return driver.execute_script(
        """
        const img = document.querySelector("#current .image-frame img");
        const box = document.querySelector("#current .finding-box");
        const i = img.getBoundingClientRect(), b = box.getBoundingClientRect();
        return {
          x0: (b.left - i.left) / i.width, y0: (b.top - i.top) / i.height,
          x1: (b.right - i.left) / i.width, y1: (b.bottom - i.top) / i.height,
          imageWidth: i.width, naturalWidth: img.naturalWidth,
          style: [box.style.left, box.style.top, box.style.width, box.style.height],
        };
        """
    )


@pytest.mark.browser
def test_browser_draws_the_findings_over_the_image(reading_scene, browser, tmp_path):
    driver = browser
    driver.get(reading_scene.review.base + "/")
    driver.find_element("name", "operator").send_keys("alice")
    driver.find_element("name", "token").send_keys(TOKEN)
    driver.find_element("css selector", "form button").click()
    wait_for(driver, lambda d: d.find_elements("css selector", "#current .finding-box"), what="the finding's box")
    wait_for(driver, images_loaded, what="the image")

    (box,) = driver.find_elements("css selector", "#current .finding-box")
    label = box.find_element("css selector", ".finding-label").text
    confidence = f"{100 * reading_scene.finding.confidence:.1f}%"
    assert label == f"PHONE 090-****-**78 {confidence}"
    x0, y0, x1, y1 = reading_scene.box
    expected = [100 * x0, 100 * y0, 100 * (x1 - x0), 100 * (y1 - y0)]
    geometry = finding_geometry(driver)
    # Percentages of the image's frame, so the box follows the image at any size...
    assert [float(v.removesuffix("%")) for v in geometry["style"]] == pytest.approx(expected, abs=0.01)
    # ...and the frame is the image: the box lands on the pixels the reader named.
    assert [geometry[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx(list(reading_scene.box), abs=0.004)
    # The image is shown smaller than it is: the box is scaled with it.
    assert geometry["imageWidth"] < geometry["naturalWidth"]

    text = current_text(driver)
    assert "Text in the image" in text and "text read: 3 lines" in text
    assert "personal_info 88.0% (fused with the text) · CNN alone 41.0%" in text
    (row,) = driver.find_elements("css selector", "#current .findings li")
    assert "PHONE" in row.text and "090-****-**78" in row.text and confidence in row.text
    assert "1234-5678" not in driver.page_source  # the page never gets the number itself

    shot = tmp_path / "review-boxes.png"
    driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "review-boxes.png")

    # At phone width the image is drawn smaller still; the box stays on the number.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    wait_for(driver, lambda d: finding_geometry(d)["imageWidth"] < 380, what="the narrow layout")
    geometry = finding_geometry(driver)
    assert [geometry[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx(list(reading_scene.box), abs=0.006)
    driver.save_screenshot(str(ARTIFACTS / "review-boxes-phone.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # The next images: a reading cut short, and one whose gate saw no text. No boxes on either.
    press(driver, "j")
    wait_for(driver, lambda d: "text not fully read: budget exceeded" in current_text(d), what="the budget status")
    assert not driver.find_elements("css selector", "#current .finding-box")
    assert "personal_info" not in driver.find_element("css selector", "#current .reading").text  # not fused
    press(driver, "j")
    wait_for(driver, lambda d: "no text (gate)" in current_text(d), what="the gate status")
    assert not driver.find_elements("css selector", "#current .finding-box")
    # No script error and no Content-Security-Policy violation (the boxes' positions included).
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
