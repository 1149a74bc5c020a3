"""Bad inputs, generated (issue 13): hypothesis throws malformed requests at the jobs API (over HTTP, at a
real uvicorn server), malformed tool calls at the MCP server (fastmcp's in-memory client, same studio), and
damaged or lying files at the image loaders, the dataset import and the model-header reader.

Every answer must be a clear refusal: a 4xx with a `detail`, an MCP tool error with a message (never an
exception escaping a tool), a PixelImageError, a skipped file with its reason. Never a 500, never a traceback
reaching the client. After each front end's run the studio must still serve and still generate, with no job
left 'queued' or 'running' and no half-written (`.*.tmp`) file anywhere in its folders.

Generated jobs never really render: a valid generated body may ask for 16 images at 2048 px. In the REST
suite the queue holds them and each accepted job is cancelled through the cancel route; in the MCP suite
(whose tools wait for their job) a watcher cancels each job at once. The checks afterwards run one real
generation. Every suite is derandomized, so CI sees the same cases on every run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import logging
import string
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from studio import limits
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.slow

CASES = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TRACEBACK = "Traceback (most recent call last)"


# ----------------------------------------------------------------------------------------------------------
# the studio under test: one per module, with near-valid things to aim at
# ----------------------------------------------------------------------------------------------------------
def _safetensors(header: dict | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, demo_model):
    """A served studio with a deploy target, a header-only LoRA, a broken LoRA, a broken user workflow, an
    empty dataset, and one finished job (its id and files are near-valid inputs)."""
    from studio.features import dataset_library
    from studio.frontends.assemble import App
    from studio.params import GenerateParams

    root = tmp_path_factory.mktemp("fuzz")
    games = root / "games"
    (games / "slime-quest" / "assets").mkdir(parents=True)
    settings_ = make_settings(root, demo_model, project_roots=(games,))
    loras = settings_.loras_dir
    header = {"__metadata__": {"dgxp.trigger_word": "pxl"},
              "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    (loras / "pixel_style.safetensors").write_bytes(_safetensors(header, b"\0" * 4))
    (loras / "broken.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all")
    (settings_.data_dir / "workflows").mkdir(parents=True)
    (settings_.data_dir / "workflows" / "broken.toml").write_text('kind = "sprite"\nprompt = 3\n')
    files = root / "files"
    files.mkdir()
    (files / "notes.png").write_text("hello, I am text")
    (files / "huge.png").write_bytes(png_header(60000, 60000))
    (files / "cut.png").write_bytes(encode("PNG", "RGBA", 8, 8, seed=1)[:40])
    with App(settings_) as app, LiveServer(app) as server:
        dataset_library.create(app.studio, "empty")
        done = app.studio.generate(GenerateParams(prompt="a slime", seed=3, steps=1), timeout=120)
        server.games, server.files = games, files
        server.job_id, server.image = done.job_id, done.images[0]
        yield server


def stray_temp_files(server) -> list[Path]:
    folders = (server.app.settings.data_dir, server.app.settings.models_dir, server.games)
    return [p for folder in folders for p in folder.rglob(".*.tmp")]


def assert_healthy(server) -> None:
    """Still serving, the queue drained with nothing stuck, nothing half-written, a real job still runs."""
    from studio.params import GenerateParams

    studio = server.studio
    reply = httpx.get(server.url + "api/health", timeout=30)
    assert reply.status_code == 200 and reply.json()["ok"] is True
    deadline = time.time() + 60
    while studio.queue.active() and time.time() < deadline:
        time.sleep(0.1)
    assert not studio.queue.active(), [j.summary() for j in studio.queue.active()]
    stuck = studio.store.query("SELECT id, status FROM jobs WHERE status IN ('queued', 'running')")
    assert not stuck, stuck
    assert not stray_temp_files(server)
    result = studio.generate(GenerateParams(prompt="x", seed=1, steps=1), timeout=120)
    assert all(im.path.is_file() for im in result.images)


@contextlib.contextmanager
def jobs_held(studio):
    """Queued jobs wait (the queue's own hold, as during a training run) until the block ends."""
    release = threading.Event()
    studio.queue.add_hold(lambda: None if release.is_set() else "fuzzing")
    try:
        yield
    finally:
        release.set()


@contextlib.contextmanager
def jobs_cancelled(studio):
    """Every job is cancelled as soon as it exists (at its first step if the worker got it first)."""
    stop = threading.Event()

    def cancel_all():
        while not stop.wait(0.005):
            for job in studio.queue.active():
                studio.queue.cancel(job.id)

    watcher = threading.Thread(target=cancel_all, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


# ----------------------------------------------------------------------------------------------------------
# values: mostly near-valid objects (plausible and boundary values), with a field or two turned to junk
# ----------------------------------------------------------------------------------------------------------
ODD = [None, True, False, 0, -1, 2.7, -0.0, 1e309, -1e309, float("nan"), 2**31, 2**63, -2**63, 10**30,
       "", " ", "NaN", "1e309", "0x10", "12abc", "\ud800", "\x00", "a\x00b", "a" * 5000, "☃" * 300,
       "../../etc", "~nobody-here/x", [], [1, 2], [[[]]], [None], {}, {"a": 1}, {"": None}]
SIZES = ["32x32", "16X16", "8 x 8", "0x5", "0x0", "5x0", "50000x32", "32by32", "32x", "x32", "-8x-8", "1x1",
         "auto", "", "1024x1024", "1025x2", "3x4x5", "٣x٣", "32.5x32", "0x10x10",
         [16, 16], [0, 0], [16], [2.5, 3]]
UNKNOWN = ["surprise", "stpes", "Kind", "", "\ud800", "ctx"]


def junk() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(ODD), st.integers(), st.floats(), st.text(max_size=12),
                     st.lists(st.integers(-3, 300), max_size=3),
                     st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def one(*good, bad: tuple = ()) -> st.SearchStrategy:
    """One of the given values: a good one two times in three, else one just over a line (`bad`)."""
    return st.sampled_from(good + good + bad)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """st.one_of with weights (one_of drops a repeated branch, so repeating it does not weigh it)."""
    return st.sampled_from([s for n, s in choices for _ in range(n)]).flatmap(lambda s: s)


PLANS = ["as is", "as is", "as is", "one junk", "one junk", "two junk", "drop a required", "add an unknown"]


@st.composite
def near_valid(draw, fields: dict[str, st.SearchStrategy], required: tuple[str, ...] = (), **fixed) -> dict:
    """An object with its required fields and some optional ones, each a plausible or boundary value; then
    often one or two of them turned to junk, a required one dropped or an unknown one added. `fixed` fields
    (a body's "kind") are set as given."""
    obj = {k: draw(v) for k, v in fields.items() if k in required or draw(st.booleans())}
    plan = draw(st.sampled_from(PLANS))
    if plan.endswith("junk") and fields:
        for k in draw(st.permutations(sorted(fields)))[:1 if plan == "one junk" else 2]:
            obj[k] = draw(junk())
    elif plan == "drop a required" and required:
        del obj[draw(st.sampled_from(required))]
    elif plan == "add an unknown":
        obj[draw(st.sampled_from(UNKNOWN))] = draw(junk())
    return {**fixed, **obj}


def sizes() -> st.SearchStrategy:
    side = st.integers(-2, 70000)
    return st.one_of(one("32x32", "16X16", "8 x 8", "1x1", bad=tuple(SIZES)),
                     st.builds("{}x{}".format, side, side))


PIXEL = {"size": one("32x32", [16, 16], "8 x 8", None, bad=("0x5", "1025x2", "32by32")), "canvas": sizes(),
         "size_mode": one("hint", "exact", bad=("EXACT",)),
         "colors": one(None, 16, 2, 256, "auto", bad=(1, 257)),
         "palette": one(None, "pico-8", "gameboy", bad=("no-such-palette", "/etc/passwd", "")),
         "background": one("auto", "keep", "#ffffff", "#fff", bad=("white", "#gggggg", "")),
         "keep_holes": one(True, bad=(1,)), "dither": one("none", "bayer", bad=("floyd",)),
         "remove_strays": one(False, bad=("no",)), "outline": one(None, "#000000", bad=("#00", "black")),
         "crop": one(True, False, bad=(None,))}
LORAS = one(None, "", "pixel_style", "pixel_style:0.5", {"pixel_style": 0.8}, [{"name": "pixel_style"}],
            bad=("pixel_style:9", "broken", "nope, pixel_style", "a:b:c", {"pixel_style": 5}, {"broken": 1},
                 {"../loras/pixel_style": 1}, [{"name": "pixel_style", "weight": "heavy"}], [{"name": ["x"]}],
                 [["pixel_style", 1, 2]], ["pixel_style", "pixel_style"], [f"l{i}" for i in range(9)]))
GENERATE = {"prompt": one("a red slime", "x", "☃ slime", bad=(" ", "a" * 4001)),
            "negative": one("blurry", "", bad=("a" * 4001,)),
            "model": one(None, "demo-tiny", bad=("nope", "../checkpoints/demo-tiny", " ")), "loras": LORAS,
            "seed": one(None, 1, 0, 2**32 - 1, "7", bad=(2**32, -1)),
            "steps": one(1, 2, "2", 150, bad=(0, 151)),
            "guidance": one(0.0, 6.5, "6", 30.0, bad=(30.5, -1)),
            "width": one(None, 64, 72, 2048, bad=(63, 2056, 4096)), "height": one(None, 64, 128, bad=(100,)),
            "count": one(1, 2, 16, "3", bad=(17, 64, 0)), "pixel": st.one_of(st.none(), near_valid(PIXEL))}
VALUES = st.dictionaries(one("subject", "style", "items", bad=("nope", "{item}", "")),
                         st.one_of(one("a bat", "sword, shield", "{subject}", "{0}", bad=(",", "a" * 5000)),
                                   st.text(max_size=20)), max_size=3)


# ----------------------------------------------------------------------------------------------------------
# REST
# ----------------------------------------------------------------------------------------------------------
def job_bodies(fuzz) -> st.SearchStrategy:
    files = fuzz.files
    inits = one(str(fuzz.image.raw_path), fuzz.image.id,
                bad=(str(fuzz.image.path), str(files / "notes.png"), str(files / "huge.png"),
                     str(files / "cut.png"), str(files), "/nonexistent/a.png", "", "x" * 300 + ".png"))
    params = near_valid(GENERATE, ("prompt",))
    generate = near_valid({"params": params, "source": one("cli", "api")}, ("params",), kind="generate")
    strength = one(0.5, 0.05, 0.95, "0.3", bad=(0.96, 0))
    variation = near_valid({"params": params, "init": inits, "strength": strength}, ("params", "init"),
                           kind="variation")
    names = one("single_sprite", "walk_cycle", "item_batch", "tileset",
                bad=("broken", "nope", "../workflows/broken"))
    workflow = near_valid({"name": names, "values": VALUES, "generate": near_valid(GENERATE)}, ("name",),
                          kind="workflow")
    wrong_kind = near_valid({"params": params, "kind": one("paint", "GENERATE", " generate", None)})
    return weighted((3, generate), (2, variation), (2, workflow), (1, wrong_kind), (1, junk()))


def train_bodies() -> st.SearchStrategy:
    overrides = st.dictionaries(one("steps", "rank", "learning_rate", "base_model", "dataset_dir", "dataset",
                                    "preset", "model", "output_name", "studio", "nope"), junk(), max_size=2)
    start = near_valid({"dataset": one("empty", "nope", "", "../empty", "EMPTY"), "overrides": overrides,
                        "preset": one("fast", "balanced", "nope", {"steps": 1}, {}),
                        "model": one("demo-tiny", "nope"), "name": one("my-lora", "../x")}, ("dataset",))
    resume = near_valid({"resume": one("run-1", "../runs", ".", "a" * 300)}, ("resume",))
    return weighted((2, start), (1, resume), (1, junk()))


RAW_BODIES = [b"", b"{", b"}", b'{"kind": "generate",}', b"\xff\xfe\x00", b"[" * 100_000, b'{"a":' * 50_000,
              b"1" * 5000, b"NaN", b'"\\ud800"', b"\x00" * 64,
              b'{"kind": "generate", "params": {"prompt": "x", "steps": 1e400}}',
              b'{"kind": "generate", "params": {"prompt": "x"}, "kind": "paint"}']


def raw_bodies() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64),
                     st.text(max_size=64).map(lambda s: s.encode("utf-8", "surrogatepass")))


def job_ids(fuzz) -> st.SearchStrategy:
    return st.one_of(one(fuzz.job_id, fuzz.job_id.upper(), "nope", "0" * 12, "a" * 5000, "%00", "' OR 1=1 --",
                         "\ud800", "☃"), st.text(min_size=1, max_size=40))


def to_json(body) -> bytes:
    return json.dumps(body).encode()  # NaN, Infinity and escaped lone surrogates go as sent


def lookup(method: str, job_id: str) -> tuple[str, str, bytes]:
    path = "jobs/" + quote(job_id, safe="", errors="surrogatepass").replace(".", "%2E")
    return method, path + ("/cancel" if method == "POST" else ""), b""


def rest_requests(fuzz) -> st.SearchStrategy:
    """(method, path under /api/v1/, body bytes)."""
    jobs = job_bodies(fuzz).map(lambda b: ("POST", "jobs", to_json(b)))
    train = st.one_of(train_bodies().map(to_json), raw_bodies()).map(lambda b: ("POST", "train", b))
    lookups = st.builds(lookup, one("GET", "POST"), job_ids(fuzz))
    raw = raw_bodies().map(lambda b: ("POST", "jobs", b))
    return weighted((6, jobs), (1, raw), (2, train), (1, lookups))


def check_reply(reply: httpx.Response, allowed: set[int]) -> None:
    assert reply.status_code in allowed, (reply.status_code, reply.text[:500])
    assert TRACEBACK not in reply.text
    if reply.status_code >= 400:
        detail = reply.json()["detail"]
        assert isinstance(detail, str) and detail.strip(), reply.text[:500]


def test_rest_refuses_bad_requests_clearly(fuzz):
    api = fuzz.url + "api/v1/"
    headers = {"content-type": "application/json"}

    @CASES
    @given(request=rest_requests(fuzz))
    def case(client, request):
        method, path, body = request
        reply = client.request(method, api + path, content=body, headers=headers)
        if path == "jobs":
            check_reply(reply, {202, 400})
            if reply.status_code == 202:  # a valid body: it is queued (and held); stop it now
                cancel = client.post(f"{api}jobs/{reply.json()['job_id']}/cancel")
                assert cancel.status_code == 200 and cancel.json() == {"cancelled": True}
        elif path == "train":
            check_reply(reply, {400})  # nothing here can start a run: no dataset has an image
        else:
            check_reply(reply, {200, 404})
            assert method == "GET" or reply.status_code == 404 or reply.json()["cancelled"] is False

    fresh = httpx.Limits(max_keepalive_connections=0)  # one connection per case: no case can break the next
    with httpx.Client(timeout=60, limits=fresh) as client, jobs_held(fuzz.studio):
        case(client)
    assert_healthy(fuzz)


# ----------------------------------------------------------------------------------------------------------
# MCP
# ----------------------------------------------------------------------------------------------------------
class EscapedExceptions(logging.Handler):
    """fastmcp logs an exception that escaped a tool (anything but a ToolError) with its traceback, then sends
    the client a generic "Error calling tool" message; those are collected here."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append(f"{record.getMessage()}: {record.exc_info[1]!r}")


class McpSession:
    """fastmcp's in-memory client on an event loop of its own thread, so each example is one plain call."""

    def __init__(self, app):
        from fastmcp import Client

        from studio.frontends.mcp import build_mcp

        self.escaped = EscapedExceptions()
        logging.getLogger("fastmcp").addHandler(self.escaped)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = Client(build_mcp(app))
        self.run(self.client.__aenter__())

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, tool: str, args: dict):
        return self.run(self.client.call_tool(tool, args, raise_on_error=False))

    def close(self) -> None:
        self.run(self.client.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        logging.getLogger("fastmcp").removeHandler(self.escaped)


def base64_images() -> st.SearchStrategy:
    return st.one_of(image_bytes(), damaged_images()).map(lambda b: base64.b64encode(b).decode())


def tool_calls(fuzz) -> st.SearchStrategy:
    """(tool, arguments): near-valid calls of every tool, weighted toward the ones that do real work."""
    assets, files = fuzz.games / "slime-quest" / "assets", fuzz.files
    prompt, colors = one("a red slime", bad=(" ", "a" * 4001)), one(None, 16, 2, 256, bad=(1, 257))
    seed, steps = one(None, 1, bad=(-1, 2**32, 2**70)), one(1, 2, 150, bad=(0, 151))
    paths = one(str(fuzz.image.raw_path),
                bad=(str(fuzz.image.path), str(files / "notes.png"), str(files / "huge.png"), str(files),
                     str(files / "cut.png"), "data:image/png;base64,", "not base64 !!", "~/x.png",
                     "~nobody-here/x.png", "x" * 300))
    sources = one(fuzz.job_id, str(fuzz.image.raw_path),
                  bad=(str(files / "notes.png"), "nope", "~nobody-here/x.png", "x" * 300, ""))
    assets_dirs = one(str(assets),
                      bad=(str(assets / ".." / ".."), str(files), "", "~nobody-here/a", "x" * 300))
    names = one("slime", "slime_2", bad=("../../escape", "a/b", "Slime", "", "con"))
    tools = {
        "generate_sprite": ({"prompt": prompt, "size": sizes(), "loras": LORAS, "seed": seed,
                             "colors": colors, "steps": steps, "model": one(None, "demo-tiny", bad=("nope",)),
                             "palette": one(None, "pico-8", bad=("nope", "")),
                             "transparent": one(True, False), "count": one(1, 16, bad=(17, 65)),
                             "negative": one("blurry", bad=("a" * 4001,))}, ("prompt",)),
        "generate_sprite_sheet": ({"prompt": prompt, "size": sizes(), "frames": one(2, 8, bad=(1, 9)),
                                   "animation": one("walk", "idle", "jump", bad=("two words", "a" * 300, "")),
                                   "strategy": one("img2img", "strip", bad=("x",)),
                                   "fps": one(8.0, 1, 50, bad=(0.5, 51)), "colors": colors, "seed": seed,
                                   "steps": steps}, ("prompt",)),
        "generate_tileset": ({"prompt": prompt, "tiles": one(1, 16, bad=(0, 17)), "size": sizes(),
                              "seamless": one(True, False), "colors": colors, "seed": seed, "steps": steps},
                             ("prompt",)),
        "run_workflow": ({"name": one("single_sprite", "walk_cycle", "item_batch", bad=("broken", "nope")),
                          "values": st.one_of(st.none(), VALUES), "seed": seed}, ("name",)),
        "pixelate_image": ({"image": st.one_of(base64_images(), paths), "size": st.one_of(st.none(), sizes()),
                            "colors": colors, "palette": one(None, "pico-8", bad=("nope", "/etc/x"))},
                           ("image",)),
        "deploy_to_bevy": ({"source": sources, "assets_dir": assets_dirs, "name": names,
                            "kind": one("auto", "sprite", bad=("sheet", "tileset", "paint"))},
                           ("source", "assets_dir", "name")),
        "get_job": ({"job_id": job_ids(fuzz)}, ("job_id",)),
        "cancel_job": ({"job_id": job_ids(fuzz)}, ("job_id",)),
        "search_history": ({"text": one("slime", "%", "'", "a" * 5000), "limit": one(1, 200, bad=(0, 201))},
                           ()),
        "list_models": ({}, ()), "list_loras": ({}, ()), "list_workflows": ({}, ()), "no_such_tool": ({}, ()),
    }
    heavy = {"generate_sprite": 2, "pixelate_image": 3, "deploy_to_bevy": 2, "run_workflow": 2}
    return weighted(*((heavy.get(name, 1), st.tuples(st.just(name), near_valid(*args).filter(utf8)))
                      for name, args in tools.items()))


def utf8(arguments: dict) -> bool:
    """The client cannot send a lone surrogate ("\\ud800") at all; those are left to the REST suite."""
    try:
        json.dumps(arguments, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def texts_of(result) -> list[str]:
    return [getattr(block, "text", "") for block in result.content]


def test_mcp_refuses_bad_tool_calls_clearly(fuzz):
    session = McpSession(fuzz.app)

    @CASES
    @given(call=tool_calls(fuzz))
    def case(call):
        name, arguments = call
        session.escaped.seen.clear()
        result = session.call(name, arguments)
        assert not session.escaped.seen, f"an exception escaped {name}: {session.escaped.seen}"
        text = "\n".join(texts_of(result))
        assert TRACEBACK not in text
        if result.is_error:
            assert text.strip(), f"{name}: an error without a message"

    try:
        with jobs_cancelled(fuzz.studio):
            case()
        models = session.call("list_models", {})
        assert not models.is_error and "demo-tiny" in "".join(texts_of(models))
    finally:
        session.close()
    assert_healthy(fuzz)


# ----------------------------------------------------------------------------------------------------------
# image loaders
# ----------------------------------------------------------------------------------------------------------
FORMATS = [("PNG", "RGBA"), ("PNG", "RGB"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "I;16"),
           ("PNG", "1"), ("GIF", "P"), ("GIF", "L"), ("JPEG", "RGB"), ("JPEG", "L"), ("BMP", "RGB"),
           ("BMP", "P"), ("BMP", "1"), ("WEBP", "RGBA"), ("TIFF", "RGBA"), ("TIFF", "I;16")]
ANIMATED = {"PNG", "GIF", "WEBP"}


def make_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    return rgba.convert("RGB").quantize(4) if mode == "P" else rgba.convert(mode)


def encode(fmt: str, mode: str, w: int, h: int, seed: int, frames: int = 1, transparency: bool = False
           ) -> bytes:
    images = [make_image(mode, w, h, seed + i) for i in range(frames)]
    extra = {"save_all": True, "append_images": images[1:]} if frames > 1 else {}
    if transparency and mode == "P":
        extra["transparency"] = 0
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, **extra)
    return buf.getvalue()


def png_header(w: int, h: int, depth: int = 8, colour: int = 2, data: bool = True) -> bytes:
    """A PNG whose IHDR (correct CRC) claims w x h; with `data`, a tiny IDAT and IEND follow, else nothing."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    tail = chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"") if data else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)) + tail


def gif_header(w: int, h: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0)
            + b"\x08\x02\x4c\x01\x00;")


def bmp_header(w: int, h: int, bpp: int = 24) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def jpeg_header(w: int, h: int) -> bytes:
    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    sof = segment(0xC0, struct.pack(">BHHB", 8, h, w, 1) + b"\x01\x11\x00")
    return b"\xff\xd8" + sof + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\xff\xd9"


def tiff_header(w: int, h: int) -> bytes:
    """One IFD: w x h, 8-bit greyscale, one strip of one byte (every value a LONG)."""
    tags = [(256, w), (257, h), (258, 8), (262, 1), (273, 8), (277, 1), (278, h), (279, 1)]
    ifd = b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in tags)
    return b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + b"\0\0\0\0"


HEADERS = {"png": png_header, "gif": gif_header, "bmp": bmp_header, "jpeg": jpeg_header, "tiff": tiff_header}
HUGE_SIDE = st.one_of(st.integers(limits.MAX_IMAGE_PIXELS // 4096 + 1, 65535), st.sampled_from([4097, 65535]))


@st.composite
def image_bytes(draw) -> bytes:
    """A valid tiny image: 1x1 up to 9x9, any of FORMATS, sometimes animated or with palette transparency."""
    fmt, mode = draw(st.sampled_from(FORMATS))
    frames = draw(st.integers(1, 3)) if fmt in ANIMATED else 1
    w, h, seed = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(0, 999))
    return encode(fmt, mode, w, h, seed, frames, draw(st.booleans()))


@st.composite
def lying_headers(draw) -> bytes:
    """Headers that claim a size (huge, zero, tiny, negative) and a format the data does not have."""
    side = st.one_of(HUGE_SIDE, st.integers(0, 16))
    kind = draw(st.sampled_from(sorted(HEADERS)))
    w, h = draw(side), draw(side)
    if kind == "png":
        return png_header(w, h, draw(st.sampled_from([1, 8, 16, 3])), draw(st.sampled_from([0, 2, 3, 6, 1])),
                          draw(st.booleans()))
    if kind == "bmp":
        return bmp_header(draw(st.sampled_from([w, -w])), draw(st.sampled_from([h, -h])),
                          draw(st.sampled_from([1, 8, 24, 32, 3])))
    return HEADERS[kind](w, h)


@st.composite
def damaged_images(draw) -> bytes:
    """A valid image or a lying header, then truncated at a random point and/or with random bytes changed."""
    data = bytearray(draw(st.one_of(image_bytes(), lying_headers())))
    flips = st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255))
    for pos, value in draw(st.lists(flips, max_size=4)):
        data[pos] = value
    return bytes(data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)


SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\x00",
              b"MM\x00*"]


def file_bytes() -> st.SearchStrategy:
    signed = st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=64)).map(b"".join)
    return weighted((1, image_bytes()), (2, damaged_images()), (1, lying_headers()), (1, signed),
                    (1, st.binary(max_size=256)))


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "RGBX",
             "RGBa", "I;16", "I;16B"]


def pil_images() -> st.SearchStrategy:
    side = st.sampled_from([0, 1, 2, 5])
    return st.builds(Image.new, st.sampled_from(PIL_MODES), st.tuples(side, side))


def arrays() -> st.SearchStrategy:
    dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64,
                              np.bool_])
    shapes = st.one_of(hnp.array_shapes(min_dims=2, max_dims=3, min_side=0, max_side=6),
                       st.sampled_from([(0, 0, 4), (6,), (2, 2, 2, 2), (4, 4, 5), (4, 4, 0)]))
    return st.builds(_array, dtypes, shapes, st.integers(0, 99))


def _array(dtype, shape, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(0, 300, shape)
    if values.size and seed % 4 == 0:
        values.flat[0] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


def loader_inputs(tmp: Path) -> st.SearchStrategy:
    """What load_rgba is handed: bytes, a file holding them, an odd path, a PIL image, a numpy array."""
    counter = itertools.count()

    def as_file(data: bytes) -> Path:
        path = tmp / f"in-{next(counter)}.png"
        path.write_bytes(data)
        return path

    paths = st.sampled_from([str(tmp / "missing.png"), str(tmp), "", "a" * 300, "a\x00b", "/dev/null"])
    return weighted((3, file_bytes()), (1, file_bytes().map(as_file)), (1, paths), (1, pil_images()),
                    (1, arrays()))


def check_loaded(load, src) -> None:
    from pipelines.pixel import PixelImageError

    try:
        out = load(src)
    except PixelImageError as e:
        assert str(e).strip()
        return
    for a in out if isinstance(out, list) else [out]:
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4 and min(a.shape[:2]) >= 2, a.shape


def test_image_loaders_refuse_bad_images_clearly(tmp_path):
    from pipelines.pixel import load_frames, load_rgba

    @CASES
    @given(src=loader_inputs(tmp_path))
    def case(src):
        check_loaded(load_rgba, src)
        check_loaded(load_frames, src)

    case()


@settings(CASES, max_examples=100)
@given(kind=st.sampled_from(sorted(HEADERS)), w=HUGE_SIDE, h=HUGE_SIDE)
def test_huge_declared_sizes_are_refused_from_the_header(kind, w, h):
    from pipelines.pixel import PixelImageError, load_rgba

    assert w * h > limits.MAX_IMAGE_PIXELS
    with pytest.raises(PixelImageError, match="megapixels"):
        load_rgba(HEADERS[kind](w, h))


NAMES = st.text(string.ascii_letters + string.digits + "_- .", min_size=1, max_size=12)


@st.composite
def uploads(draw) -> list[tuple[str, bytes]]:
    """1-3 files as a person might upload them: images, damaged ones, a caption, a zip of such files."""
    ext = st.sampled_from([".png", ".gif", ".jpg", ".bmp", ".webp", ".PNG", ".txt", ".exe", ""])
    files = draw(st.lists(st.tuples(NAMES, ext, file_bytes()), min_size=1, max_size=3))
    out = [(name + e, data) for name, e, data in files]
    if draw(st.booleans()):
        entry_names = one("ok.png", "../evil.png", "/abs.png", "__MACOSX/x.png", ".hidden.png", "a/b.gif")
        entries = draw(st.lists(st.tuples(entry_names, file_bytes()), max_size=3))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
        raw = buf.getvalue()
        out.append(("pack.zip", raw[:draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw))
    return out


def check_dataset_folder(ds) -> None:
    """Nothing half-written: no temp file, every record's files there, no file without a record."""
    from training.dataset import Dataset

    assert not list(ds.path.rglob(".*.tmp"))
    records = {r.file for r in ds.records}
    images = {p.name for p in (ds.path / "images").iterdir() if p.suffix != ".txt"}
    natives = {p.name for p in (ds.path / "native").iterdir()}
    captions = {p.name for p in (ds.path / "images").iterdir() if p.suffix == ".txt"}
    assert images == records and natives == {f"{Path(f).stem}.png" for f in records}
    assert captions == {f"{Path(f).stem}.txt" for f in records}
    assert {r.file for r in Dataset.open(ds.path.parent, ds.name).records} == records


def test_dataset_import_skips_bad_files_with_a_reason(tmp_path):
    from training.dataset import Dataset, DatasetError

    counter = itertools.count()

    @settings(CASES, max_examples=100)
    @given(files=uploads())
    def case(files):
        folder = tmp_path / f"upload-{next(counter)}"
        folder.mkdir()
        for i, (name, data) in enumerate(files):
            (folder / f"{i}-{name}").write_bytes(data)
        ds = Dataset.create(tmp_path / "datasets", f"set-{next(counter)}")
        try:
            report = ds.import_files(sorted(folder.iterdir()))
        except DatasetError as e:  # only a zip that cannot be opened at all fails the whole call
            assert "zip" in str(e)
        else:
            assert all(s.reason.strip() for s in report.skipped)
        check_dataset_folder(ds)

    case()


# ----------------------------------------------------------------------------------------------------------
# model files: a LoRA or checkpoint header is read from any file a person drops into models/
# ----------------------------------------------------------------------------------------------------------
def safetensors_files() -> st.SearchStrategy:
    offsets = st.lists(st.one_of(st.integers(-5, 2**64), st.floats()), max_size=3)
    entry = near_valid({"dtype": one("F32", "F16"), "shape": one([1], [], [2, 2]), "data_offsets": offsets})
    header = st.dictionaries(one("w", "__metadata__", "x.weight"), st.one_of(entry, junk()), max_size=3)
    odd = one(b"[" * 50_000, b"null", b"{}", b'{"w": {"data_offsets": [0, 1e400]}}')
    raw_header = st.one_of(header.map(lambda h: json.dumps(h).encode()), st.binary(max_size=40), odd)
    lengths = st.one_of(st.none(), st.integers(0, 2**64 - 1))  # None: the header's true length
    return st.builds(safetensors_bytes, raw_header, lengths, st.binary(max_size=16))


def safetensors_bytes(header: bytes, length: int | None, tail: bytes) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + tail


def test_model_headers_fail_with_a_model_error(tmp_path):
    from studio.registry import ModelError, read_safetensors_header

    path = tmp_path / "lora.safetensors"

    @settings(CASES, max_examples=300)
    @given(data=st.one_of(safetensors_files(), st.binary(max_size=32)))
    def case(data):
        path.write_bytes(data)
        try:
            header = read_safetensors_header(path)
        except ModelError as e:
            assert str(e).strip()
        else:
            assert isinstance(header, dict)

    case()
