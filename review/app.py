"""The operators' review tool: a small aiohttp web app in front of the Audit API.

The browser gets one static page (server/review/static/) and talks JSON to this app; the app
turns each action into Audit calls made as the logged-in operator, so leases, verdicts and undo
keep the service's guarantees. What the app keeps itself, per login session and in memory
only: which records it handed this operator (the only ones the page may judge or see images of),
what the operator skipped, and what they judged here (the only verdicts they may undo).

Security: a shared token (review.token) opens a session whose id lives in an HttpOnly,
SameSite=Strict cookie; every POST also needs the session's CSRF token in a header and, when the
browser sends one, a same-origin Origin. The page builds its DOM with textContent only, and a
strict Content-Security-Policy (no inline script, images from this origin only) backs that up.
Images are fetched here with the service's SSRF rules and re-encoded (review/images.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import moderation_pb2 as pb
from review.client import AuditClient, ServiceError, timestamp
from review.dupes import Member, group
from review.images import ImageCache, ReviewImage
from server.config import Config

log = logging.getLogger("review")

STATIC = Path(__file__).parent / "static"
COOKIE = "review_session"
OPERATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
MAX_SESSIONS = 1000
# Per session: ids remembered as skipped (kept out of the queue) and as judged (undoable).
MAX_REMEMBERED = 1000
MAX_IDS_PER_ACTION = 200
MAX_FILTER_VALUES = 20
LOGIN_FAILURE_DELAY_S = 1.0
REASONS = {
    "flagged": apb.AUDIT_REASON_FLAGGED,
    "sampled": apb.AUDIT_REASON_SAMPLED,
    "low_confidence": apb.AUDIT_REASON_LOW_CONFIDENCE,
}
REASON_NAMES = {v: k for k, v in REASONS.items()}
OUTCOMES = {
    apb.VERDICT_APPLIED: "applied",
    apb.VERDICT_UNCHANGED: "unchanged",
    apb.VERDICT_NOT_FOUND: "not_found",
    apb.VERDICT_CONFLICT: "conflict",
}

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# An image is only ever an image: no script, no plugin, no navigation, even if opened on its own.
IMAGE_CSP = "default-src 'none'; sandbox"


@dataclass
class Session:
    id: str
    operator: str
    csrf: str
    last_seen: float
    # Records leased to this operator and shown on the page: the only ones it may judge or skip.
    leased: dict[str, apb.AuditItem] = field(default_factory=dict)
    # Record id -> (url, content hash) of every image the page may show (leased and post siblings).
    viewable: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    skipped: OrderedDict[str, None] = field(default_factory=OrderedDict)
    judged: OrderedDict[str, apb.AuditItem] = field(default_factory=OrderedDict)


def _remember(store: OrderedDict, key: str, value) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MAX_REMEMBERED:
        store.popitem(last=False)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


def _epoch(stamp) -> float:
    return stamp.ToNanoseconds() / 1e9


def _split(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def parse_filter(query) -> apb.ReviewFilter:
    """The page's filter (query parameters) -> the Audit API's. Dates come as epoch seconds the
    browser computed from the operator's local dates."""
    flt = apb.ReviewFilter()
    for name in _split(query.getall("reason", [])):
        if name not in REASONS:
            raise web.HTTPBadRequest(text=f"unknown reason {name!r}")
        flt.reasons.append(REASONS[name])
    flt.top_classes.extend(_split(query.getall("class", [])))
    flt.model_versions.extend(_split(query.getall("version", [])))
    flt.model_name = query.get("model", "").strip()
    if max(len(flt.reasons), len(flt.top_classes), len(flt.model_versions)) > MAX_FILTER_VALUES:
        raise web.HTTPBadRequest(text=f"at most {MAX_FILTER_VALUES} values per filter")
    for name, target in (("after", flt.created_after), ("before", flt.created_before)):
        text = query.get(name, "").strip()
        if text:
            try:
                value = float(text)
            except ValueError:
                raise web.HTTPBadRequest(text=f"{name}: epoch seconds expected") from None
            if not math.isfinite(value) or value < 0:
                raise web.HTTPBadRequest(text=f"{name}: not a valid moment")
            target.CopyFrom(timestamp(value))
    return flt


def _enum_name(enum_type, number: int, prefix: str) -> str:
    try:
        return enum_type.Name(number).removeprefix(prefix)
    except ValueError:  # a number this build does not know
        return "UNSPECIFIED"


def reading_json(item: apb.AuditItem) -> dict | None:
    """The text reader's result for the page (None: the record has none): status and entity names
    as in model/reader/types.py, boxes as [x0, y0, x1, y1] fractions of the image's width and
    height (after EXIF orientation, as the image this app serves), clamped to 0..1."""
    if not item.HasField("reading"):
        return None
    reading = item.reading

    def fraction(value: float) -> float:
        return round(min(1.0, max(0.0, value)), 4) if math.isfinite(value) else 0.0

    findings = []
    for finding in reading.findings:
        x0, x1 = sorted((fraction(finding.box.x0), fraction(finding.box.x1)))
        y0, y1 = sorted((fraction(finding.box.y0), fraction(finding.box.y1)))
        findings.append(
            {
                "entity": _enum_name(pb.EntityType, finding.entity, "ENTITY_"),
                "confidence": round(finding.confidence, 4),
                "box": [x0, y0, x1, y1],
                "masked": finding.masked,
                "evidence": list(finding.evidence),
            }
        )
    return {
        "status": _enum_name(pb.ReadingStatus, reading.status, "READING_"),
        "gate_score": round(reading.gate_score, 4),
        "lines": reading.lines,
        "cues": list(reading.cues),
        "cnn_personal_info": round(reading.cnn_personal_info, 4),
        "fused": reading.fused,
        "findings": findings,
    }


def _item_json(item: apb.AuditItem, image: ReviewImage | None) -> dict:
    return {
        "record_id": item.record_id,
        "post_id": item.post_id,
        "image_id": item.image_id,
        "request_id": item.request_id,
        "url": item.url,
        "content_sha256": item.content_sha256,
        "scores": dict(item.scores),
        "top_class": item.top_class,
        "decision": pb.Decision.Name(item.decision).removeprefix("DECISION_"),
        "reason": REASON_NAMES.get(item.reason, "unknown"),
        "model_name": item.model_name,
        "model_version": item.model_version,
        "created_at": _epoch(item.created_at),
        "lease_expires_at": _epoch(item.lease_expires_at) if item.HasField("lease_expires_at") else None,
        "reading": reading_json(item),
        "image": None
        if image is None
        else {
            "ok": image.jpeg is not None,
            "error": image.error,
            "changed": image.changed,
            "width": image.width,
            "height": image.height,
        },
    }


def _sort_key(item: apb.AuditItem) -> tuple:
    # One Classify call's records share created_at: post and image ids keep a post together.
    return (item.created_at.seconds, item.created_at.nanos, item.post_id, item.image_id, item.record_id)


class ReviewApp:
    def __init__(self, config: Config):
        self.config = config
        self.cfg = config.review
        self.token_digest = _digest(self._token())
        self.client: AuditClient | None = None
        self.images: ImageCache | None = None
        self.sessions: dict[str, Session] = {}
        self._failures = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._index = (STATIC / "index.html").read_text()
        self._login = (STATIC / "login.html").read_text()

    @property
    def _audit(self) -> AuditClient:
        if self.client is None:
            raise RuntimeError("ReviewApp.start() has not run")
        return self.client

    @property
    def _images(self) -> ImageCache:
        if self.images is None:
            raise RuntimeError("ReviewApp.start() has not run")
        return self.images

    def _token(self) -> str:
        if self.cfg.token_file:
            token = Path(self.cfg.token_file).read_text().strip().splitlines()[0].strip()
        else:
            token = self.cfg.token.strip()
        if not token:
            token = secrets.token_urlsafe(18)
            log.warning("no review.token or review.token_file set; operators log in with this run's token: %s", token)
        elif len(token) < 12:
            raise ValueError("review token is shorter than 12 characters")
        return token

    # -- life cycle ---------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._errors], client_max_size=256 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_get("/api/queue", self.queue)
        app.router.add_get("/api/progress", self.progress)
        app.router.add_post("/api/verdicts", self.verdicts)
        app.router.add_post("/api/skip", self.skip)
        app.router.add_post("/api/unskip", self.unskip)
        app.router.add_post("/api/undo", self.undo)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/img/{record_id}", self.image)
        app.router.add_get("/favicon.ico", self.favicon)
        app.router.add_get("/static/review.js", self._static("review.js", "text/javascript"))
        app.router.add_get("/static/review.css", self._static("review.css", "text/css"))
        return app

    async def start(self) -> int:
        self.client = AuditClient(self.cfg)
        self.images = ImageCache(
            self.config.fetch, self.config.decode, self.cfg.max_image_side, self.cfg.image_cache_items
        )
        await self.images.start()
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("review tool on http://%s:%d/ (Audit API at %s)", self.cfg.host, self.port, self.cfg.target)
        return self.port

    async def stop(self) -> None:
        # Hand back what every open session holds, so other operators get it now rather than
        # when the leases expire.
        for session in list(self.sessions.values()):
            try:
                await self._release_all(session)
            except ServiceError as exc:
                log.warning("could not release %s's records: %s", session.operator, exc)
        self.sessions.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.images is not None:
            await self.images.close()
        if self.client is not None:
            await self.client.close()

    # -- middleware ---------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        # Not no-referrer: under it Chrome sends `Origin: null` on the page's own form posts,
        # which the origin check below has to refuse.
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ServiceError as exc:
            return _error(exc.status, exc.message)
        except Exception:
            # Answered here rather than by aiohttp, so the response still gets the headers above.
            log.exception("review request %s %s failed", request.method, request.path)
            return _error(500, "internal error (see the review tool's log)")

    # -- sessions -----------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            return None
        now = time.time()
        if now - session.last_seen > self.cfg.session_idle_s:
            self.sessions.pop(session.id, None)
            return None
        session.last_seen = now
        return session

    def _api_session(self, request: web.Request, write: bool = False) -> Session:
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="log in first")
        if write:
            self._check_origin(request)
            given = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
        return session

    @staticmethod
    def _check_origin(request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="cross-origin request refused")

    def _expire_sessions(self) -> None:
        now = time.time()
        for sid, session in list(self.sessions.items()):
            if now - session.last_seen > self.cfg.session_idle_s:
                del self.sessions[sid]
        while len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions.values(), key=lambda s: s.last_seen)
            del self.sessions[oldest.id]

    # -- pages --------------------------------------------------------------------------------

    def _static(self, name: str, content_type: str):
        body = (STATIC / name).read_bytes()

        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
            )

        return handler

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def index(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            raise web.HTTPSeeOther("/login")
        page = self._index.replace("{{csrf}}", html.escape(session.csrf, quote=True)).replace(
            "{{operator}}", html.escape(session.operator, quote=True)
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    def _login_response(self, message: str = "", operator: str = "", status: int = 200) -> web.Response:
        page = self._login.replace("{{message}}", html.escape(message, quote=True)).replace(
            "{{operator}}", html.escape(operator, quote=True)
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8", status=status)

    async def login_page(self, request: web.Request) -> web.Response:
        if self._session(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._login_response()

    async def login(self, request: web.Request) -> web.Response:
        self._check_origin(request)
        form = await request.post()
        operator = str(form.get("operator", "")).strip()
        token = str(form.get("token", ""))
        if not hmac.compare_digest(_digest(token), self.token_digest):
            # One failure at a time, each slowed: guessing the token takes forever.
            async with self._failures:
                await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
            log.warning("failed review login from %s", request.remote)
            return self._login_response("Wrong token.", operator[:64], status=401)
        if not OPERATOR_ID.fullmatch(operator):
            return self._login_response(
                "Operator id: 1 to 64 letters, digits and . _ @ + - (no spaces).", operator[:64], status=400
            )
        self._expire_sessions()
        session = Session(
            id=secrets.token_urlsafe(32), operator=operator, csrf=secrets.token_urlsafe(32), last_seen=time.time()
        )
        self.sessions[session.id] = session
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE, session.id, httponly=True, samesite="Strict", secure=self.cfg.cookie_secure, path="/"
        )
        log.info("operator %s logged in", operator)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._api_session(request, write=True)
        await self._release_all(session)
        self.sessions.pop(session.id, None)
        response = _json({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _release_all(self, session: Session) -> None:
        ids = list(session.leased)
        session.leased.clear()
        for start in range(0, len(ids), MAX_IDS_PER_ACTION):
            await self._audit.release(session.operator, ids[start : start + MAX_IDS_PER_ACTION])

    # -- the queue ----------------------------------------------------------------------------

    async def queue(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        flt = parse_filter(request.query)
        op, lease_s, limit = session.operator, self.cfg.lease_s, self.cfg.batch_size
        skipped = list(session.skipped)
        wanted = apb.ReviewFilter()
        wanted.CopyFrom(flt)
        wanted.exclude_record_ids.extend(skipped)
        items = await self._audit.next_for_review(op, limit, lease_s, wanted)
        matching = {i.record_id for i in items}
        posts = list(dict.fromkeys(i.post_id for i in items))
        if posts:
            # The rest of each post's waiting images, whatever the filter: an operator judges a
            # post as a whole, and may do so in one action.
            siblings = await self._audit.next_for_review(
                op, limit, lease_s, apb.ReviewFilter(post_ids=posts, exclude_record_ids=skipped)
            )
            items += [s for s in siblings if s.record_id not in matching]
        items.sort(key=_sort_key)
        # Leases of records no longer shown (skipped, or outside a new filter) go back now.
        dropped = [rid for rid in session.leased if rid not in {i.record_id for i in items}]
        session.leased = {i.record_id: i for i in items}
        for rid in dropped:
            session.skipped.pop(rid, None)
        for start in range(0, len(dropped), MAX_IDS_PER_ACTION):
            await self._audit.release(op, dropped[start : start + MAX_IDS_PER_ACTION])

        post_items = await asyncio.gather(*(self._audit.post(p) for p in posts))
        for item in items:
            _remember(session.viewable, item.record_id, (item.url, item.content_sha256))
        images = await asyncio.gather(*(self._images.get(i.url, i.content_sha256) for i in items))
        by_id = dict(zip((i.record_id for i in items), images, strict=True))
        groups = group(
            [Member(i.record_id, i.content_sha256, by_id[i.record_id]) for i in items], self.cfg.duplicate_distance
        )

        post_json = {}
        for post_id, records in zip(posts, post_items, strict=True):
            entries = []
            for record in sorted(records, key=_sort_key):
                if record.url:
                    _remember(session.viewable, record.record_id, (record.url, record.content_sha256))
                if record.verdict_label:
                    state = "judged"
                elif record.record_id in session.leased:
                    state = "yours"
                elif record.lease_owner and record.lease_expires_at.seconds > time.time():
                    state = "leased"
                else:
                    state = "waiting"
                entries.append(
                    {
                        "record_id": record.record_id,
                        "image_id": record.image_id,
                        "has_url": bool(record.url),
                        "decision": pb.Decision.Name(record.decision).removeprefix("DECISION_"),
                        "top_class": record.top_class,
                        "state": state,
                        "verdict": record.verdict_label,
                        "verdict_operator": record.verdict_operator,
                        "lease_owner": record.lease_owner if state == "leased" else "",
                    }
                )
            post_json[post_id] = entries
        classes = sorted({c for i in items for c in i.scores})
        return _json(
            {
                "operator": op,
                "classes": classes,
                "lease_s": lease_s,
                "items": [
                    {**_item_json(i, by_id[i.record_id]), "same_post_only": i.record_id not in matching} for i in items
                ],
                "groups": [{"id": g[0], "members": g} for g in groups],
                "posts": post_json,
            }
        )

    async def progress(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        flt = parse_filter(request.query)
        since = request.query.get("since", "").strip()
        try:
            since_value = float(since) if since else None
        except ValueError:
            raise web.HTTPBadRequest(text="since: epoch seconds expected") from None
        stats = await self._audit.stats(session.operator, since_value, flt)
        return _json({"done": stats.judged_by_operator, "done_all": stats.judged, "left": stats.pending})

    # -- actions ------------------------------------------------------------------------------

    async def _body_ids(self, request: web.Request, key: str = "record_ids") -> tuple[dict, list[str]]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="JSON body expected") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="JSON object expected")
        ids = body.get(key, [])
        if (
            not isinstance(ids, list)
            or not ids
            or len(ids) > MAX_IDS_PER_ACTION
            or not all(isinstance(i, str) for i in ids)
        ):
            raise web.HTTPBadRequest(text=f"{key}: 1 to {MAX_IDS_PER_ACTION} record ids expected")
        return body, list(dict.fromkeys(ids))

    async def verdicts(self, request: web.Request) -> web.Response:
        session = self._api_session(request, write=True)
        body, ids = await self._body_ids(request)
        label = body.get("label")
        if not isinstance(label, str) or not label:
            raise web.HTTPBadRequest(text="label expected")
        missing = [rid for rid in ids if rid not in session.leased]
        if missing:
            return _error(
                409,
                f"{len(missing)} of these records are not leased to you any more "
                "(lease ran out or released): reload the queue",
            )
        results = await self._audit.submit(session.operator, [(rid, label) for rid in ids])
        out = []
        for rid, result in zip(ids, results, strict=True):
            outcome = OUTCOMES.get(result.outcome, "unknown")
            # Absent when a second click on the same record overtook this request.
            item = session.leased.pop(rid, None)
            session.skipped.pop(rid, None)
            if item is not None and outcome in ("applied", "unchanged"):
                _remember(session.judged, rid, item)
            out.append({"record_id": rid, "outcome": outcome, "message": result.message})
        return _json({"results": out})

    async def undo(self, request: web.Request) -> web.Response:
        session = self._api_session(request, write=True)
        _, ids = await self._body_ids(request)
        mine = [rid for rid in ids if rid in session.judged]
        retracted = await self._audit.retract(session.operator, mine, self.cfg.lease_s) if mine else []
        for rid in retracted:
            session.leased[rid] = session.judged.pop(rid)
        return _json({"record_ids": retracted})

    async def skip(self, request: web.Request) -> web.Response:
        session = self._api_session(request, write=True)
        _, ids = await self._body_ids(request)
        # Kept leased until the next queue fetch releases it: until then a skip is undone by
        # forgetting it, and the record is not handed to someone else and back in between.
        skipped = [rid for rid in ids if rid in session.leased]
        for rid in skipped:
            _remember(session.skipped, rid, None)
        return _json({"record_ids": skipped})

    async def unskip(self, request: web.Request) -> web.Response:
        session = self._api_session(request, write=True)
        _, ids = await self._body_ids(request)
        back = [rid for rid in ids if rid in session.skipped and rid in session.leased]
        for rid in back:
            session.skipped.pop(rid)
        return _json({"record_ids": back})

    # -- images -------------------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        source = session.viewable.get(request.match_info["record_id"])
        if source is None:
            raise web.HTTPNotFound(text="no such image in your queue")
        image = await self._images.get(*source)
        if image.jpeg is None:
            raise web.HTTPNotFound(text=image.error)
        return web.Response(
            body=image.jpeg,
            content_type="image/jpeg",
            headers={
                "Content-Security-Policy": IMAGE_CSP,
                "Cache-Control": "private, max-age=600",
                "Content-Disposition": "inline; filename=image.jpg",
            },
        )
