"""Where a product photo may come from: confined paths and SSRF-guarded URL fetches.

Real sockets and real HTTP(S) servers in threads, all on loopback. Two seams of
``pipeline.jobs.sources`` are replaced here, never the socket or HTTP libraries:

* ``resolve_host`` by a table (no test does real DNS), so names can resolve to any address
  and resolutions can be counted;
* ``open_connection`` by a guard that lets real connections go to loopback only and fails the
  test on any other address. A few tests add made-up "public" addresses to the guard, which
  it routes to a loopback server: the fetcher believes it reached the internet, no packet
  leaves the machine, and the guard records which checked address was dialled.
"""

from __future__ import annotations

import io
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from pipeline.images import InputError
from pipeline.jobs import sources
from pipeline.jobs.sources import FetchPolicy, fetch_url, read_source, resolve_path

FIELD = "product_image_url"
PUBLIC_IP = "93.184.215.14"  # only ever handed to the guard below, which routes it to loopback
LOCAL = FetchPolicy(allow_private=True, timeout_s=5.0)


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image("PNG")
JPEG = _image("JPEG")
WEBP = _image("WEBP")
GIF = _image("GIF")


# ---------------------------------------------------------------------------------------------
# Seams: table DNS and a loopback-only connection guard


class FakeDNS:
    def __init__(self) -> None:
        self.table: dict[str, list[list[str]]] = {}  # name -> answers, one per call (last repeats)
        self.calls: list[str] = []

    def set(self, name: str, *answers: list[str]) -> None:
        self.table[name] = list(answers)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown in the test table")
        return answers.pop(0) if len(answers) > 1 else answers[0]


class Guard:
    def __init__(self, real: Callable[[str, int, float], socket.socket]) -> None:
        self.real = real
        self.dialled: list[str] = []
        self.public: set[str] = set()  # made-up public addresses, routed to 127.0.0.1

    def __call__(self, ip: str, port: int, timeout: float) -> socket.socket:
        self.dialled.append(ip)
        if ip in self.public:
            return self.real("127.0.0.1", port, timeout)
        if not ipaddress.ip_address(ip).is_loopback:
            raise AssertionError(f"the fetcher tried to connect to {ip}; tests may only reach loopback")
        return self.real(ip, port, timeout)


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    monkeypatch.setattr(sources, "resolve_host", fake)
    return fake


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    g = Guard(sources.open_connection)
    monkeypatch.setattr(sources, "open_connection", g)
    return g


# ---------------------------------------------------------------------------------------------
# A tiny HTTP server with per-path behaviours

Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TestServer

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host")))
        route = self.server.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self.send_error(404)
            else:
                route(self)
        except OSError:  # the client hung up (as it should on refusals)
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class TestServer(ThreadingHTTPServer):
    __test__ = False
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.stop = threading.Event()
        self.sni: list[str | None] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


@pytest.fixture
def make_server() -> Iterator[Callable[..., TestServer]]:
    servers: list[TestServer] = []

    def make(host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> TestServer:
        srv = TestServer(host, port)
        if tls is not None:
            tls.sni_callback = lambda sslobj, name, ctx: srv.sni.append(name)
            srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server(make_server: Callable[..., TestServer]) -> TestServer:
    return make_server()


def body(data: bytes, ctype: str = "image/png", length: bool = True) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True

    return route


def redirect(location: str, code: int = 302, delay: float = 0.0) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        if delay:
            time.sleep(delay)
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

    return route


# ---------------------------------------------------------------------------------------------
# Paths


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b, outside = tmp_path / "in_a", tmp_path / "in_b", tmp_path / "outside"
    for d in (a, b, outside):
        d.mkdir()
    (b / "photo.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(JPEG)
    return a, b, outside


def _refusal(text: str, dirs: list[Path]) -> str:
    with pytest.raises(InputError) as err:
        resolve_path(text, "product_image_path", dirs, 1 << 20)
    return str(err.value)


def test_relative_paths_resolve_in_the_input_folders_not_the_working_directory(
    folders: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = folders
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "photo.png").write_bytes(GIF)  # same name in the working directory: must be ignored
    (cwd / "only_here.png").write_bytes(GIF)
    (a / "sub").mkdir()
    (a / "sub" / "deep.png").write_bytes(WEBP)
    monkeypatch.chdir(cwd)
    assert resolve_path("photo.png", "product_image_path", [a, b], 1 << 20) == PNG  # found in the 2nd folder
    assert resolve_path("sub/deep.png", "product_image_path", [a, b], 1 << 20) == WEBP
    assert resolve_path("./sub/../sub/deep.png", "product_image_path", [a, b], 1 << 20) == WEBP
    assert "not a readable file inside the input folders" in _refusal("only_here.png", [a, b])


def test_absolute_home_and_file_uri_paths(folders: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, _ = folders
    odd = a / "my photos" / "ü 100%.png"
    odd.parent.mkdir()
    odd.write_bytes(JPEG)
    assert resolve_path(str(b / "photo.png"), "f", [a, b], 1 << 20) == PNG
    assert resolve_path(odd.as_uri(), "f", [a, b], 1 << 20) == JPEG  # percent-encoded
    assert resolve_path("file://localhost" + odd.as_uri()[len("file://"):], "f", [a, b], 1 << 20) == JPEG
    assert resolve_path("FILE:" + str(b / "photo.png"), "f", [a, b], 1 << 20) == PNG
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_path("~/in_b/photo.png", "f", [Path("~/in_b")], 1 << 20) == PNG
    with pytest.raises(InputError, match=r"^f: file:// URIs must name a local file"):
        resolve_path("file://fileserver/share/photo.png", "f", [a, b], 1 << 20)


def test_missing_outside_and_escaping_paths_get_one_answer_naming_the_folders(
    folders: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, outside = folders
    (a / "link_out.png").symlink_to(outside / "secret.png")
    (a / "dir_out").symlink_to(outside)
    (a / "loop").symlink_to(a / "loop")
    (a / "a_folder").mkdir()
    os.mkfifo(a / "pipe.png")
    monkeypatch.chdir(outside)
    monkeypatch.setenv("HOME", str(outside))
    tries = [
        "missing.png",
        str(a / "missing.png"),
        "../outside/secret.png",
        str(a / ".." / "outside" / "secret.png"),
        str(outside / "secret.png"),
        "secret.png",  # exists in the working directory, which is no input folder
        "~/secret.png",
        (outside / "secret.png").as_uri(),
        "link_out.png",
        "dir_out/secret.png",
        "loop",
        "a_folder",
        "pipe.png",  # not a regular file (and reading it must not block)
        "/etc/passwd",
        "bad\x00name.png",
        "",
    ]
    answers = {text: _refusal(text, [a, b]) for text in tries}
    expected = (
        f"product_image_path: not a readable file inside the input folders ({a}, {b}); give a path inside one of them"
    )
    assert set(answers.values()) == {expected}, answers


def test_symlinks_within_the_folders_are_followed(folders: tuple[Path, Path, Path]) -> None:
    a, b, _ = folders
    (a / "alias.png").symlink_to(b / "photo.png")
    assert resolve_path("alias.png", "f", [a, b], 1 << 20) == PNG


def test_no_input_folders_means_paths_are_off(folders: tuple[Path, Path, Path]) -> None:
    _, b, _ = folders
    with pytest.raises(InputError) as err:
        resolve_path(str(b / "photo.png"), "product_image_path", [], 1 << 20)
    msg = str(err.value)
    assert msg.startswith("product_image_path: file paths are off on this server")
    assert "ADGEN_INPUT_DIRS" in msg and "base64" in msg and "URL" in msg


def test_a_file_over_the_size_limit_is_refused(folders: tuple[Path, Path, Path]) -> None:
    _, b, _ = folders
    with pytest.raises(InputError, match=r"^f is larger than 10 bytes$"):
        resolve_path("photo.png", "f", [b], 10)


# ---------------------------------------------------------------------------------------------
# URLs: the happy path and the policy


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (GIF, "image/gif")],
    ids=["png", "jpeg", "webp", "gif"],
)
def test_fetch_from_loopback_when_private_targets_are_allowed(server: TestServer, guard: Guard, data: bytes, mime: str) -> None:
    server.routes["/img"] = body(data, ctype="application/octet-stream", length=mime != "image/gif")
    assert fetch_url(server.url("/img?size=1"), FIELD, LOCAL) == (data, mime)
    assert server.seen == [("/img?size=1", f"127.0.0.1:{server.port}")]
    assert guard.dialled == ["127.0.0.1"]


def test_the_default_policy_refuses_the_same_loopback_url_without_connecting(server: TestServer, guard: Guard, dns: FakeDNS) -> None:
    server.routes["/img"] = body(PNG)
    with pytest.raises(InputError) as err:
        fetch_url(server.url("/img"), FIELD, FetchPolicy())
    assert str(err.value) == f"{FIELD}: the host is a loopback address (127.0.0.1); public http(s) URLs only"
    dns.set("localhost", ["127.0.0.1", "::1"])
    with pytest.raises(InputError, match=r"the host resolves to a loopback address \(127\.0\.0\.1\)"):
        fetch_url(server.url("/img", host="localhost"), FIELD, FetchPolicy())
    assert server.seen == [] and guard.dialled == []


NEVER = [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata address (169.254.169.254)"),
    ("http://169.254.1.1/", "link-local address (169.254.1.1)"),
    ("http://[fe80::1]/", "link-local address (fe80::1)"),
    ("http://[fd00:ec2::254]/", "cloud metadata address (fd00:ec2::254)"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
    ("http://[2002:a9fe:a9fe::1]/", "cloud metadata address (2002:a9fe:a9fe::1, that is 169.254.169.254)"),
    ("http://0.0.0.0/", "unspecified address (0.0.0.0)"),
    ("http://0/", "unspecified address (0.0.0.0)"),
    ("http://[::]/", "unspecified address (::)"),
    ("http://224.0.0.1/", "multicast address"),
    ("http://[ff02::1]/", "multicast address"),
    ("http://255.255.255.255/", "broadcast address"),
    ("http://240.0.0.1/", "reserved address"),
]
PRIVATE = [
    ("http://[::1]/", "loopback address (::1)"),
    ("http://10.0.0.1/", "private address (10.0.0.1)"),
    ("http://172.16.5.4:8080/", "private address (172.16.5.4)"),
    ("http://192.168.1.1/", "private address"),
    ("http://100.64.0.1/", "private address (100.64.0.1)"),
    ("http://[fc00::1]/", "private address"),
    ("http://[fd12:3456::1]/", "private address"),
    ("http://[::ffff:127.0.0.1]/", "loopback address"),
    ("http://[::ffff:10.1.2.3]/", "private address"),
    ("http://[64:ff9b::a00:1]/", "private address (64:ff9b::a00:1, that is 10.0.0.1)"),
    ("http://[2002:7f00:1::]/", "loopback address (2002:7f00:1::, that is 127.0.0.1)"),
    ("http://2130706433/", "loopback address (127.0.0.1)"),
    ("http://0x7f000001/", "loopback address (127.0.0.1)"),
    ("http://0177.0.0.1/", "loopback address (127.0.0.1)"),
    ("http://127.1/", "loopback address (127.0.0.1)"),
    ("http://127.000.000.001./", "loopback address (127.0.0.1)"),
    ("http://0xa.0.0.1/", "private address (10.0.0.1)"),
    ("https://192.168.0.1:8443/x.png", "private address"),
]


@pytest.mark.parametrize(("url", "why"), NEVER + PRIVATE)
def test_non_public_targets_are_refused_before_any_connection(url: str, why: str, guard: Guard, dns: FakeDNS) -> None:
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        fetch_url(url, FIELD, FetchPolicy(timeout_s=0.2))
    assert why in str(err.value) and str(err.value).startswith(f"{FIELD}: the host is ")
    assert guard.dialled == [] and dns.calls == []
    assert time.monotonic() - start < 1.0  # no I/O at all: nothing to wait for


@pytest.mark.parametrize(("url", "why"), NEVER)
def test_link_local_metadata_and_friends_stay_refused_when_private_targets_are_allowed(url: str, why: str, guard: Guard) -> None:
    with pytest.raises(InputError) as err:
        fetch_url(url, FIELD, FetchPolicy(allow_private=True, timeout_s=0.2))
    assert why in str(err.value) and str(err.value).endswith("such addresses are never fetched")
    assert guard.dialled == []


def test_host_names_are_judged_by_every_address_they_resolve_to(guard: Guard, dns: FakeDNS) -> None:
    dns.set("meta.adgen.test", ["169.254.169.254"])
    dns.set("intranet.adgen.test", ["10.0.0.5"])
    dns.set("mixed.adgen.test", [PUBLIC_IP, "10.0.0.5"])
    dns.set("mapped.adgen.test", ["::ffff:192.168.0.9"])
    for host, why in [
        ("meta.adgen.test", "the host resolves to a cloud metadata address (169.254.169.254); such addresses are never fetched"),
        ("intranet.adgen.test", "the host resolves to a private address (10.0.0.5); public http(s) URLs only"),
        ("mixed.adgen.test", "the host resolves to a private address (10.0.0.5); public http(s) URLs only"),
        ("mapped.adgen.test", "private address (::ffff:c0a8:9, that is 192.168.0.9)"),
    ]:
        with pytest.raises(InputError) as err:
            fetch_url(f"http://{host}/p.png", FIELD, FetchPolicy(timeout_s=0.2))
        assert why in str(err.value)
    with pytest.raises(InputError, match=r"^product_image_url: the host name of the URL could not be resolved$"):
        fetch_url("http://nowhere.adgen.test/p.png", FIELD, FetchPolicy(timeout_s=0.2))
    assert guard.dialled == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/p.png", "only http:// and https:// URLs are accepted"),
        ("file:///etc/passwd", "only http:// and https:// URLs are accepted"),
        ("gopher://example.com:70/", "only http:// and https:// URLs are accepted"),
        ("javascript:alert(1)", "only http:// and https:// URLs are accepted"),
        ("example.com/p.png", "only http:// and https:// URLs are accepted"),
        ("http://user:pass@example.com/p.png", "URLs with a user name or password are not accepted"),
        ("http://user@example.com/p.png", "URLs with a user name or password are not accepted"),
        ("http://:@example.com/p.png", "URLs with a user name or password are not accepted"),
        ("http://example.com:0/", "the port must be between 1 and 65535"),
        ("http://example.com:65536/", "port is outside 1-65535"),
        ("http://example.com:-1/", "port is outside 1-65535"),
        ("http://example.com:http/", "port is outside 1-65535"),
        ("http:///p.png", "the URL has no host"),
        ("http://[fe80::1%25eth0]/", "IPv6 zone identifiers"),
        ("http://[::1/", "not a valid URL"),
        ("http://exa mple.com/", "spaces, control characters or backslashes"),
        ("http://example.com/\r\nX-Evil: 1", "spaces, control characters or backslashes"),
        ("http://1.2.3.4.5/", "neither a valid name nor a valid IP address"),
        ("http://example.256/", "neither a valid name nor a valid IP address"),
        ("http://exa$mple.com/", "not a valid host name"),
        ("", "is empty"),
    ],
)
def test_malformed_and_unsupported_urls(url: str, why: str, guard: Guard, dns: FakeDNS) -> None:
    with pytest.raises(InputError) as err:
        fetch_url(url, FIELD, FetchPolicy(allow_private=True, timeout_s=0.2))
    assert why in str(err.value)
    assert guard.dialled == [] and dns.calls == []


def test_credentials_are_refused_even_for_an_allowed_server(server: TestServer, guard: Guard) -> None:
    server.routes["/img"] = body(PNG)
    with pytest.raises(InputError, match="user name or password"):
        fetch_url(f"http://admin:hunter2@127.0.0.1:{server.port}/img", FIELD, LOCAL)
    assert server.seen == [] and guard.dialled == []


def test_messages_are_one_short_line_that_does_not_echo_the_input(guard: Guard) -> None:
    long_url = "http://10.0.0.1/" + "A" * 5000
    for url in (long_url, "ftp://" + "B" * 5000, "http://u:" + "C" * 3000 + "@x/", "http://x/" + "D" * 9000):
        with pytest.raises(InputError) as err:
            fetch_url(url, FIELD, FetchPolicy(timeout_s=0.2))
        msg = str(err.value)
        assert "\n" not in msg and len(msg) < 160 and "AAAA" not in msg and "CCCC" not in msg


# ---------------------------------------------------------------------------------------------
# URLs: one resolution, and the connection goes to the checked address


def test_one_resolution_and_the_connection_goes_to_the_checked_address(
    make_server: Callable[..., TestServer], guard: Guard, dns: FakeDNS
) -> None:
    first = make_server("127.0.0.2")  # the address the check sees
    try:
        second = make_server("127.0.0.1", first.port)  # what a second resolution would give
    except OSError:
        pytest.skip("port taken on 127.0.0.1")
    first.routes["/img"] = body(PNG)
    second.routes["/img"] = body(JPEG)
    dns.set("img.adgen.test", ["127.0.0.2"], ["127.0.0.1"])
    assert fetch_url(first.url("/img", host="img.adgen.test"), FIELD, LOCAL) == (PNG, "image/png")
    assert dns.calls == ["img.adgen.test"]
    assert guard.dialled == ["127.0.0.2"]
    assert first.seen == [("/img", f"img.adgen.test:{first.port}")]  # the Host header names the URL's host
    assert second.seen == []


def test_dns_rebinding_cannot_move_a_checked_public_fetch_to_loopback(server: TestServer, guard: Guard, dns: FakeDNS) -> None:
    """Default policy: the name is public when checked, loopback if asked again; it is asked once."""
    guard.public.add(PUBLIC_IP)
    server.routes["/img"] = body(PNG)
    dns.set("cdn.adgen.test", [PUBLIC_IP], ["127.0.0.1"])
    assert fetch_url(server.url("/img", host="cdn.adgen.test"), FIELD, FetchPolicy(timeout_s=5)) == (PNG, "image/png")
    assert dns.calls == ["cdn.adgen.test"]
    assert guard.dialled == [PUBLIC_IP]
    assert server.seen == [("/img", f"cdn.adgen.test:{server.port}")]


def test_the_next_checked_address_is_tried_when_the_first_does_not_answer(server: TestServer, guard: Guard, dns: FakeDNS) -> None:
    server.routes["/img"] = body(PNG)
    dns.set("two.adgen.test", ["127.0.0.3", "127.0.0.1"])  # nothing listens on 127.0.0.3
    assert fetch_url(server.url("/img", host="two.adgen.test"), FIELD, LOCAL)[0] == PNG
    assert guard.dialled == ["127.0.0.3", "127.0.0.1"] and dns.calls == ["two.adgen.test"]


def test_ipv6_loopback_and_international_names(make_server: Callable[..., TestServer], guard: Guard, dns: FakeDNS) -> None:
    class V6Server(TestServer):
        address_family = socket.AF_INET6

    try:
        srv = V6Server("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv.routes["/p.png"] = body(PNG)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        assert fetch_url(f"http://[::1]:{srv.port}/p.png", FIELD, LOCAL)[0] == PNG
        dns.set("xn--bcher-kva.adgen.test", ["::1"])
        assert fetch_url(f"http://BÜCHER.adgen.test:{srv.port}/p.png", FIELD, LOCAL)[0] == PNG
    finally:
        srv.shutdown()
        srv.server_close()
    assert guard.dialled == ["::1", "::1"]
    assert srv.seen == [("/p.png", f"[::1]:{srv.port}"), ("/p.png", f"xn--bcher-kva.adgen.test:{srv.port}")]


def test_a_slow_resolver_counts_against_the_deadline(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        release.wait(5)
        return ["127.0.0.1"]

    monkeypatch.setattr(sources, "resolve_host", stuck)
    start = time.monotonic()
    try:
        with pytest.raises(InputError, match="took longer than 0.3 s"):
            fetch_url("http://slow-dns.adgen.test/p.png", FIELD, FetchPolicy(allow_private=True, timeout_s=0.3))
    finally:
        release.set()
    assert time.monotonic() - start < 2.0 and guard.dialled == []  # the resolver is stuck for 5 s


def test_a_refused_connection_is_a_clear_error(guard: Guard) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=r"could not connect to the host \(connection refused\)"):
        fetch_url(f"http://127.0.0.1:{port}/p.png", FIELD, FetchPolicy(allow_private=True, timeout_s=2))


# ---------------------------------------------------------------------------------------------
# URLs: redirects


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_followed_with_relative_locations(server: TestServer, code: int) -> None:
    server.routes["/start"] = redirect("next/img.png" if code != 308 else "/img/next/img.png", code)
    server.routes["/next/img.png"] = body(PNG)
    server.routes["/img/next/img.png"] = body(PNG)
    assert fetch_url(server.url("/start"), FIELD, LOCAL) == (PNG, "image/png")
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "the redirect target is a cloud metadata address (169.254.169.254)"),
        ("http://[fe80::a9fe:a9fe]/", "the redirect target is a link-local address"),
        ("http://0.0.0.0:{port}/img", "the redirect target is an unspecified address"),
        ("http://meta.adgen.test/", "the redirect target resolves to a link-local address (169.254.7.7)"),
        ("ftp://127.0.0.1/img", "only http:// and https:// URLs"),
        ("http://user:pw@127.0.0.1:{port}/img", "user name or password"),
        ("http://127.0.0.1:0/img", "the port must be between 1 and 65535"),
    ],
)
def test_each_redirect_is_checked_again(server: TestServer, guard: Guard, dns: FakeDNS, location: str, why: str) -> None:
    dns.set("meta.adgen.test", ["169.254.7.7"])
    server.routes["/start"] = redirect(location.format(port=server.port))
    server.routes["/img"] = body(PNG)
    with pytest.raises(InputError) as err:
        fetch_url(server.url("/start"), FIELD, LOCAL)  # private allowed: the first hop may go
    assert why in str(err.value)
    assert guard.dialled == ["127.0.0.1"] and len(server.seen) == 1


def test_a_public_page_cannot_redirect_into_the_private_network(server: TestServer, guard: Guard, dns: FakeDNS) -> None:
    guard.public.add(PUBLIC_IP)
    dns.set("cdn.adgen.test", [PUBLIC_IP])
    dns.set("intranet.adgen.test", ["10.0.0.5"])
    server.routes["/a"] = redirect("http://intranet.adgen.test/admin.png")
    server.routes["/b"] = redirect(f"http://127.0.0.1:{server.port}/img")
    server.routes["/img"] = body(PNG)
    with pytest.raises(InputError) as err:
        fetch_url(server.url("/a", host="cdn.adgen.test"), FIELD, FetchPolicy(timeout_s=5))
    assert str(err.value) == f"{FIELD}: the redirect target resolves to a private address (10.0.0.5); public http(s) URLs only"
    with pytest.raises(InputError, match=r"the redirect target is a loopback address \(127\.0\.0\.1\)"):
        fetch_url(server.url("/b", host="cdn.adgen.test"), FIELD, FetchPolicy(timeout_s=5))
    assert guard.dialled == [PUBLIC_IP, PUBLIC_IP]
    assert [path for path, _ in server.seen] == ["/a", "/b"]  # /img, on loopback, never asked


def test_the_number_of_redirects_is_capped(server: TestServer) -> None:
    for i in range(5):
        server.routes[f"/r{i}"] = redirect(f"/r{i - 1}" if i else "/img")
    server.routes["/img"] = body(PNG)
    server.routes["/loop"] = redirect("/loop")
    policy = FetchPolicy(allow_private=True, timeout_s=5, max_redirects=3)
    assert fetch_url(server.url("/r2"), FIELD, policy)[0] == PNG  # 3 redirects
    with pytest.raises(InputError, match=r"^product_image_url: more than 3 redirects; give the image's final URL$"):
        fetch_url(server.url("/r3"), FIELD, policy)  # 4 redirects
    server.seen.clear()
    with pytest.raises(InputError, match="more than 3 redirects"):
        fetch_url(server.url("/loop"), FIELD, policy)
    assert len(server.seen) == 4
    server.routes["/nowhere"] = redirect("")
    with pytest.raises(InputError, match="HTTP 302 without a Location"):
        fetch_url(server.url("/nowhere"), FIELD, policy)


# ---------------------------------------------------------------------------------------------
# URLs: size, time and content


def test_a_content_length_over_the_cap_is_refused_up_front(server: TestServer) -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(10**9))
        h.end_headers()
        h.wfile.write(PNG)
        h.wfile.flush()
        h.server.stop.wait(5)  # never sends the rest: only the header can have decided

    server.routes["/huge"] = huge
    start = time.monotonic()
    with pytest.raises(InputError, match=r"^product_image_url is larger than 1000 bytes$"):
        fetch_url(server.url("/huge"), FIELD, FetchPolicy(allow_private=True, max_bytes=1000, timeout_s=5))
    assert time.monotonic() - start < 2.5  # the server would hold the body for 5 s


def test_a_body_that_grows_past_the_cap_is_aborted(server: TestServer) -> None:
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = PNG + b"\0" * 65536
        while not h.server.stop.is_set():  # ends when the client hangs up (write fails)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))

    server.routes["/endless"] = endless
    server.routes["/unsized"] = body(PNG + b"\0" * 5000, length=False)
    policy = FetchPolicy(allow_private=True, max_bytes=3 * 1024 * 1024, timeout_s=5)
    start = time.monotonic()
    with pytest.raises(InputError, match=r"^product_image_url is larger than 3 MiB$"):
        fetch_url(server.url("/endless"), FIELD, policy)
    assert time.monotonic() - start < 3
    with pytest.raises(InputError, match=r"is larger than 4000 bytes$"):
        fetch_url(server.url("/unsized"), FIELD, FetchPolicy(allow_private=True, max_bytes=4000, timeout_s=5))


def test_one_deadline_covers_the_whole_fetch(server: TestServer) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(len(PNG)))
        h.end_headers()
        for byte in PNG:  # each byte well inside any per-read timeout, the whole far too slow
            if h.server.stop.wait(0.05):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    def silent(h: BaseHTTPRequestHandler) -> None:
        h.server.stop.wait(5)

    server.routes["/trickle"] = trickle
    server.routes["/silent"] = silent
    for i in range(3):  # three hops of 0.3 s each: every one is quick, together they are not
        server.routes[f"/hop{i}"] = redirect(f"/hop{i + 1}", delay=0.3)
    server.routes["/hop3"] = body(PNG)
    policy = FetchPolicy(allow_private=True, timeout_s=0.6)
    for path in ("/trickle", "/silent", "/hop0"):
        start = time.monotonic()
        with pytest.raises(InputError) as err:
            fetch_url(server.url(path), FIELD, policy)
        assert str(err.value) == f"{FIELD}: the download took longer than 0.6 s; use a faster host or send the image as base64"
        assert time.monotonic() - start < 2.0, path  # not 3.5 s (trickle), 5 s (silent) or success (hops)


def test_the_type_comes_from_the_bytes_not_the_content_type(server: TestServer) -> None:
    server.routes["/fake.png"] = body(b"<html><script>alert(1)</script></html>", ctype="image/png")
    server.routes["/svg"] = body(b'<svg xmlns="http://www.w3.org/2000/svg"/>', ctype="image/svg+xml")
    server.routes["/empty"] = body(b"", ctype="image/png")
    server.routes["/real"] = body(PNG, ctype="text/html")
    for path in ("/fake.png", "/svg"):
        with pytest.raises(InputError, match=r"^product_image_url: the URL does not lead to a PNG, JPEG, WebP or GIF image$"):
            fetch_url(server.url(path), FIELD, LOCAL)
    with pytest.raises(InputError, match="empty body"):
        fetch_url(server.url("/empty"), FIELD, LOCAL)
    assert fetch_url(server.url("/real"), FIELD, LOCAL) == (PNG, "image/png")


def test_http_errors_and_broken_answers(server: TestServer) -> None:
    def garbage(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        h.close_connection = True

    server.routes["/garbage"] = garbage
    with pytest.raises(InputError, match=r"^product_image_url: the server answered HTTP 404; the URL must lead straight to the image$"):
        fetch_url(server.url("/missing.png"), FIELD, LOCAL)
    with pytest.raises(InputError, match="cut off or is not valid HTTP"):
        fetch_url(server.url("/garbage"), FIELD, LOCAL)


# ---------------------------------------------------------------------------------------------
# https over the pinned socket


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:img.adgen.test\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=adgen test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=img.adgen.test")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return d


def test_https_goes_to_the_checked_address_with_the_host_name_for_sni_and_verification(
    make_server: Callable[..., TestServer], certs: Path, guard: Guard, dns: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs / "leaf.pem", certs / "leaf.key")
    srv = make_server(tls=tls)
    srv.routes["/p.png"] = body(PNG)
    dns.set("img.adgen.test", ["127.0.0.1"], ["127.0.0.9"])
    dns.set("other.adgen.test", ["127.0.0.1"])

    # The system trust store does not know the test CA: verification is on.
    with pytest.raises(InputError, match="TLS certificate could not be verified"):
        fetch_url(srv.url("/p.png", host="img.adgen.test", scheme="https"), FIELD, LOCAL)

    trusting = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    monkeypatch.setattr(sources, "tls_context", lambda: trusting)
    dns.set("img.adgen.test", ["127.0.0.1"], ["127.0.0.9"])  # a second lookup would go elsewhere
    dns.calls.clear()
    guard.dialled.clear()
    srv.sni.clear()
    srv.seen.clear()
    url = srv.url("/p.png", host="img.adgen.test", scheme="https")
    assert fetch_url(url, FIELD, LOCAL) == (PNG, "image/png")
    assert dns.calls == ["img.adgen.test"] and guard.dialled == ["127.0.0.1"]
    assert srv.sni == ["img.adgen.test"]
    assert srv.seen == [("/p.png", f"img.adgen.test:{srv.port}")]

    # Same address, another name: the certificate is checked against the URL's host, not the IP.
    with pytest.raises(InputError, match=r"^product_image_url: the host's TLS certificate could not be verified"):
        fetch_url(srv.url("/p.png", host="other.adgen.test", scheme="https"), FIELD, LOCAL)
    with pytest.raises(InputError, match="TLS certificate could not be verified"):
        fetch_url(srv.url("/p.png", scheme="https"), FIELD, LOCAL)


def test_tls_to_a_plain_http_port_fails_cleanly(server: TestServer) -> None:
    server.routes["/p.png"] = body(PNG)
    with pytest.raises(InputError, match="TLS handshake with the host failed"):
        fetch_url(server.url("/p.png", scheme="https"), FIELD, FetchPolicy(allow_private=True, timeout_s=2))


# ---------------------------------------------------------------------------------------------
# read_source


def test_read_source_takes_exactly_one_source(server: TestServer, folders: tuple[Path, Path, Path]) -> None:
    import base64

    _, b, _ = folders
    server.routes["/img"] = body(JPEG)
    common = {"input_dirs": [b], "max_bytes": 1 << 20, "policy": LOCAL}
    b64 = base64.b64encode(PNG).decode()
    assert read_source("product_image", b64=b64, path=None, url=None, **common) == PNG
    assert read_source("product_image", b64=None, path="photo.png", url="", **common) == PNG
    assert read_source("product_image", b64="  ", path=None, url=server.url("/img"), **common) == JPEG
    with pytest.raises(InputError, match=r"^product_image: no image given; send exactly one of product_image \(base64\), product_image_path or product_image_url$"):
        read_source("product_image", b64=None, path=None, url=None, **common)
    with pytest.raises(InputError, match=r"^product_image: more than one image source given"):
        read_source("product_image", b64=b64, path="photo.png", url=None, **common)
    with pytest.raises(InputError, match=r"^product_image: more than one image source given"):
        read_source("product_image", b64=None, path="photo.png", url=server.url("/img"), **common)
    with pytest.raises(InputError, match=r"^product_image is not valid base64$"):
        read_source("product_image", b64="!!!", path=None, url=None, **common)
    with pytest.raises(InputError, match=r"^product_image_path: not a readable file"):
        read_source("product_image", b64=None, path="nope.png", url=None, **common)
    with pytest.raises(InputError, match=r"^product_image_url: the host is a loopback address"):
        read_source("product_image", b64=None, path=None, url=server.url("/img"), **{**common, "policy": FetchPolicy()})
    with pytest.raises(InputError, match=r"^product_image_url is larger than 100 bytes$"):  # the tighter cap wins
        read_source("product_image", b64=None, path=None, url=server.url("/img"), **{**common, "max_bytes": 100})
