"""Passwords in store URLs never reach an error, a log line, ``repr(wf)`` or the CLI,
whatever characters they hold (issue #14): :func:`durable.urls.mask_url` and its users.

The properties draw URLs of every shape with a password that starts, ends and has in
its middle a marker whose brackets no other part of the URL holds, so "no bracket is
in the output" means "no piece of the password is", however short the password is.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable import InMemoryStore, Workflow
from durable.cli import main as cli_main
from durable.plugins import register_store, unregister_store
from durable.urls import (
    MASK,
    UrlMaskingFilter,
    mask_exception,
    mask_url,
    mask_urls_in,
    shows_a_secret,
    url_secrets,
)

PROPERTIES = settings(
    max_examples=int(os.environ.get("DURABLE_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    database=None,  # nothing written to the repository
    suppress_health_check=[HealthCheck.too_slow],
)

#: Start, middle and end of every generated password: only they hold the brackets.
MARK, MIDDLE, END = "⟦pw⟧", "⟦mid⟧", "⟦end⟧"
BRACKETS = "⟦⟧"
SECRET_KEYS = ["password", "pass", "pwd", "secret", "token", "PASSWORD", "Token"]
MORE_SECRET_KEYS = ["client_secret", "access_token", "sentinel_password", "api_key", "passwd"]

# -- strategies ---------------------------------------------------------------------------

SPECIALS = "#/?@:%& ;=+[]!$'\"\\\t\né€😀"


def texts(*, exclude: str = "", min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Text that includes every special character often, never the marker's brackets."""
    alphabet = st.one_of(
        st.sampled_from([c for c in SPECIALS if c not in exclude]),
        st.characters(blacklist_characters="⟦⟧" + exclude, blacklist_categories=("Cs",)),
    )
    return st.text(alphabet, min_size=min_size, max_size=max_size)


schemes = st.one_of(
    st.sampled_from(["redis", "rediss", "unix", "sqlite", "postgresql+asyncpg", "redis+cluster"]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9+.\-]{0,8}", fullmatch=True),
)


def secrets(*, exclude: str = "") -> st.SearchStrategy[str]:
    return st.tuples(texts(exclude=exclude), texts(exclude=exclude)).map(
        lambda halves: MARK + halves[0] + MIDDLE + halves[1] + END
    )


passwords = secrets()
# A password alone before the @ cannot hold a ':' (that would make it user:password).
lone_passwords = secrets(exclude=":")
# A user may hold anything but a ':' (its first ':' starts the password), and cannot
# start with '/' ("scheme:///..." has no authority: every parser reads a path).
users = texts(exclude=":").filter(lambda user: not user.startswith("/"))
hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9.\-]{0,20}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["localhost", "[::1]", "127.0.0.1", "cache.example.com", ""]),
)
ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}"))
paths = st.one_of(st.just(""), texts(max_size=15).map(lambda path: "/" + path))
queries = st.one_of(st.just(""), texts(max_size=20).map(lambda query: "?" + query))


@st.composite
def urls_with_a_userinfo_password(draw: st.DrawFn) -> tuple[str, str]:
    password = draw(passwords)
    url = (
        f"{draw(schemes)}://{draw(users)}:{password}@"
        f"{draw(hosts)}{draw(ports)}{draw(paths)}{draw(queries)}"
    )
    return url, password


@st.composite
def urls_with_a_lone_password(draw: st.DrawFn) -> tuple[str, str]:
    password = draw(lone_passwords)
    url = f"{draw(schemes)}://{password}@{draw(hosts)}{draw(ports)}{draw(paths)}{draw(queries)}"
    return url, password


safe_options = st.lists(
    st.tuples(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(
            lambda key: (
                not key.endswith(("pass", "pwd", "secret", "token", "password", "passwd"))
                and not key.endswith(("api_key", "apikey"))
            )
        ),
        st.from_regex(r"[A-Za-z0-9._~\-]{0,8}", fullmatch=True),
    ),
    max_size=3,
).map(lambda pairs: [f"{key}={value}" for key, value in pairs])


@st.composite
def urls_with_a_secret_option(draw: st.DrawFn) -> tuple[str, str]:
    """``?...&password=<secret>&...`` (or in the fragment), the secret percent-encoded
    (as a correct URL holds it) or raw (then a raw '&' would end it: none is drawn)."""
    secret = draw(st.one_of(passwords.map(lambda s: quote(s, safe="")), secrets(exclude="&")))
    key = draw(st.sampled_from(SECRET_KEYS + MORE_SECRET_KEYS))
    before, after = draw(safe_options), draw(safe_options)
    options = "&".join([*before, f"{key}={secret}", *after])
    where = draw(st.sampled_from(["?", "#", "?x=1#"]))
    host = draw(st.one_of(hosts, st.just("")))  # also sqlite:///path?password=...
    url = f"{draw(schemes)}://{host}{draw(ports) if host else ''}{draw(paths)}{where}{options}"
    return url, secret


#: Schemes whose ``scheme:///...`` is a path (``sqlite:///a@b.db``): no user info there.
PATH_SCHEMES = {"file", "sqlite", "sqlite3", "unix"}
#: Where an option starts, and the names of secret options: a password may hold them.
SEPARATORS = "?#&;"


def is_a_path_scheme(scheme: str) -> bool:
    return bool(PATH_SCHEMES & set(scheme.lower().split("+")))


def secrets_holding(chars: str, *, exclude: str = "") -> st.SearchStrategy[str]:
    """A secret with one of ``chars`` right after its start and right before its end
    (where a rule would cut it), and maybe more anywhere."""
    return st.tuples(
        st.sampled_from(list(chars)), texts(exclude=exclude), st.sampled_from(list(chars))
    ).map(lambda drawn: MARK + drawn[0] + drawn[1] + MIDDLE + drawn[2] + END)


def passwords_holding_an_option(*, exclude: str = "") -> st.SearchStrategy[str]:
    """A password that holds ``?password=``, ``&token=`` ...: read as the URL's query
    (``redis://:a?password=b@h``), no piece of it may show either."""
    return st.tuples(
        texts(exclude=exclude, max_size=5),
        st.sampled_from(list(SEPARATORS)),
        st.sampled_from(SECRET_KEYS + MORE_SECRET_KEYS),
        texts(exclude=exclude, max_size=5),
    ).map(lambda d: MARK + d[0] + d[1] + d[2] + "=" + MIDDLE + d[3] + END)


# What a query secret may be: raw (any character but '&', which ends it), holding an
# '@', '/' or '#' where a rule would cut it, or percent-encoded as a correct URL has it.
query_secrets = st.one_of(
    secrets(exclude="&"),
    secrets_holding("@/#", exclude="&"),
    secrets_holding("@", exclude="&"),
    passwords.map(lambda secret: quote(secret, safe="")),
)


@st.composite
def urls_with_two_secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A user info password (``user:pw@``, a lone ``pw@``, or none) and a secret option
    whose value holds an ``@`` or a ``/``, ``#`` ...: both hidden, whichever ``@`` a
    reader takes for the end of the user info. On a scheme whose ``///`` is not a path,
    the user info may start with a '/' too (``redis:///pw@host``)."""
    scheme = draw(schemes)
    path_scheme = is_a_path_scheme(scheme)
    user = draw(texts(exclude=":").filter(lambda u: not (path_scheme and u.startswith("/"))))
    kind = draw(st.sampled_from(["user:password", "lone password", "no user info"]))
    password = draw(
        st.one_of(
            secrets(exclude=":" if kind == "lone password" else ""),
            secrets_holding("@/?#", exclude=":" if kind == "lone password" else ""),
            passwords_holding_an_option(exclude=":" if kind == "lone password" else ""),
        )
    )
    if kind == "lone password" and not path_scheme and draw(st.booleans()):
        password = "/" + password  # "sqlite:///pw@h" is a path, "redis:///pw@h" is not
    userinfo = {
        "user:password": f"{user}:{password}@",
        "lone password": f"{password}@",
        "no user info": "",
    }[kind]
    secret = draw(query_secrets)
    key = draw(st.sampled_from(SECRET_KEYS + MORE_SECRET_KEYS))
    before, after = draw(safe_options), draw(safe_options)
    options = "&".join([*before, f"{key}={secret}", *after])
    where = draw(st.sampled_from(["?", "#", "?x=1#", "/0?", "?x=a@b&"]))
    host = draw(hosts)
    url = (
        f"{scheme}://{userinfo}{host}{draw(ports) if host else ''}{draw(paths)}{where}{options}"
        f"{draw(st.sampled_from(['', '#frag', '#x@y']))}"
    )
    return url, ([] if kind == "no user info" else [password]) + [secret]


def assert_no_secret(masked: str, secret: str) -> None:
    for bracket in BRACKETS:
        assert bracket not in masked, masked
        assert quote(bracket, safe="") not in masked, masked
    assert secret not in masked, masked


# -- properties -----------------------------------------------------------------------------


@PROPERTIES
@given(urls_with_a_userinfo_password())
def test_a_userinfo_password_never_shows(case: tuple[str, str]) -> None:
    url, password = case
    masked = mask_url(url)
    assert_no_secret(masked, password)
    assert f"{MASK}@" in masked
    assert mask_url(masked) == masked


@PROPERTIES
@given(urls_with_a_lone_password())
def test_a_lone_userinfo_password_never_shows(case: tuple[str, str]) -> None:
    url, password = case
    masked = mask_url(url)
    assert_no_secret(masked, password)
    assert mask_url(masked) == masked


@PROPERTIES
@given(urls_with_a_secret_option())
def test_a_secret_option_never_shows(case: tuple[str, str]) -> None:
    url, secret = case
    masked = mask_url(url)
    assert_no_secret(masked, secret)
    assert mask_url(masked) == masked


@PROPERTIES
@given(urls_with_two_secrets())
def test_a_password_and_a_secret_option_never_show(case: tuple[str, list[str]]) -> None:
    # Whether its '@' ends the user info or not, no piece of either secret shows.
    url, secrets_in_it = case
    masked = mask_url(url)
    for secret in secrets_in_it:
        assert_no_secret(masked, secret)
    assert mask_url(masked) == masked
    text = f"cannot reach {url}: refused"
    for secret in secrets_in_it:
        assert_no_secret(mask_urls_in(text, url), secret)
        assert_no_secret(mask_urls_in(f"Store({url!r})", url), secret)


@PROPERTIES
@given(urls_with_a_userinfo_password(), texts(exclude="'\"<>` \t\n\r\x0b\x0c"))
def test_a_password_in_a_text_never_shows(case: tuple[str, str], words: str) -> None:
    # Found in a message by its scheme (it holds no space or quote here) ...
    url, password = case
    for text in (f"cannot reach {url}: refused", f"Store({url!r}, ttl=3)", f"<{url}>"):
        if not any(c.isspace() or c in "'\"<>`" for c in url):
            assert_no_secret(mask_urls_in(text), password)
        # ... and always when the URL is given: also quoted by repr.
        assert_no_secret(mask_urls_in(text, url), password)
    assert_no_secret(mask_urls_in(f"{words} {url!r} {words}", url), password)


@PROPERTIES
@given(st.one_of(st.text(), schemes.flatmap(lambda s: st.text().map(lambda t: f"{s}://{t}"))))
def test_masking_never_raises_and_is_idempotent(text: str) -> None:
    masked = mask_url(text)
    assert isinstance(masked, str)
    assert mask_url(masked) == masked
    assert isinstance(mask_urls_in(text, text, None, 3), str)


@PROPERTIES
@given(
    schemes,
    hosts,
    ports,
    st.from_regex(r"(/[A-Za-z0-9._~\-]{0,8}){0,3}", fullmatch=True),
    safe_options,
)
def test_a_url_without_secrets_is_left_alone(
    scheme: str, host: str, port: str, path: str, options: list[str]
) -> None:
    query = "?" + "&".join(options) if options else ""
    url = f"{scheme}://{host}{port if host else ''}{path}{query}"
    assert mask_url(url) == url


# -- the rule, by example ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:p#a/ss?@localhost:6379/0", "redis://u:***@localhost:6379/0"),
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://app:hunter2@host/0", "redis://app:***@host/0"),
        ("rediss://hunter2@host/0", "rediss://***@host/0"),
        ("redis://u:p@ss:w@rd@host/0", "redis://u:***@host/0"),  # the last @ ends it
        ("redis://u:p%40ss@host/0", "redis://u:***@host/0"),
        ("redis://u:pass word€@host/0", "redis://u:***@host/0"),
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        ("unix://:pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("sqlite:///x.db?password=s3cret", "sqlite:///x.db?password=***"),
        (
            "sqlite:///x.db?mode=ro&PWD=a%26b&durability=full",
            "sqlite:///x.db?mode=ro&PWD=***&durability=full",
        ),
        ("sqlite:///x.db#token=abc", "sqlite:///x.db#token=***"),
        (
            "postgresql://h/db?sslmode=require&client_secret=x",
            "postgresql://h/db?sslmode=require&client_secret=***",
        ),
        ("redis://h/0?a=1#token=zz&b=2", "redis://h/0?a=1#token=***&b=2"),
        ("jobs.db?password=x", "jobs.db?password=***"),  # a bare path's options too
        ("sqlite:///dir/user@example.db", "sqlite:///dir/user@example.db"),  # a path's @
        ("unix:///run/a@b.sock?db=1", "unix:///run/a@b.sock?db=1"),
        ("redis:///hunter2@host/0", "redis://***@host/0"),  # not a path: a password
        ("redis://host/0?password=p@ss", "redis://***"),  # is "host/0?password=p" one?
        ("redis://:a?password=b@h", "redis://:***"),  # "a?password=b", or "b@h"?
        ("redis://u:pw@h/0?token=t@k&db=1", "redis://u:***&db=1"),
        ("redis://0?password=a:b&x=1#y@z", "redis://***@z"),  # its ':' is the secret's
        ("my_db://u:hunter2@h/0", "my_db://u:***@h/0"),  # any scheme
        ("b'redis://:hunter2@h/0'", "b'redis://:***@h/0'"),  # repr(bytes)
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("memory://", "memory://"),
        ("durable.db", "durable.db"),
        ("", ""),
    ],
)
def test_masking_by_example(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_an_ambiguous_at_masks_more_never_less() -> None:
    # Is "0?name=a" part of a password, or of the path? Taken as user info: hidden.
    assert "hunter2" not in mask_url("redis://u:hunter2@h/0?name=a@b")
    # An @ in a secret option's value: neither piece of the value shows.
    masked = mask_url("redis://h/0?password=p4@ss5")
    assert "p4" not in masked
    assert "ss5" not in masked
    # A user info that looks like a secret option: neither piece of the password shows.
    masked = mask_url("redis://u:x1?token=y2@host/0")
    assert "x1" not in masked
    assert "y2" not in masked
    # Both at once: the query secret's @ may end a user info holding "?password=".
    masked = mask_url("redis://:a1?password=b2@h")
    assert "a1" not in masked
    assert "b2" not in masked
    masked = mask_url("redis://u:a1/b2@h:1/0?x=1&password=c3@d4/e5#f6&db=1")
    assert not any(piece in masked for piece in ("a1", "b2", "c3", "d4", "e5", "f6"))
    assert masked.endswith("&db=1")


def test_url_secrets_are_what_masking_hides() -> None:
    assert url_secrets("redis://u:p#a/ss?@h/0?token=t0k&db=1") == ["p#a/ss?", "t0k"]
    assert url_secrets("redis://lone@h") == ["lone"]
    assert url_secrets("redis://h/0") == []


def test_a_store_that_rewrites_its_url_still_shows_no_password() -> None:
    # The secret is found in the text even where the URL around it was rewritten.
    text = "Store('redis://user:a?bc%40localhost%3A1%2F0=')"
    assert "a?bc" not in mask_urls_in(text, "redis://user:a?bc@localhost:1/0")
    assert shows_a_secret("Store('x:?y')", "redis://user:?@h/0")
    assert not shows_a_secret("Store('redis://user:***@h/0')", "redis://user:?@h/0")


def test_a_non_string_does_not_raise() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert mask_url(Unprintable()) == MASK  # type: ignore[arg-type]
    assert mask_url(42) == "42"  # type: ignore[arg-type]


# -- where URLs are shown -------------------------------------------------------------------


PASSWORDS = [
    *["p#a/ss?", "s3cr#t", "a/b?c", "x@y:z", "50%off", "pass word", "päss€😀"],
    *["it's", 'q"uote', "b\\s", "?", "a?b", "#"],  # short: a store may rewrite them
]


def shown_for(db: str) -> tuple[str, bool]:
    """``repr(Workflow("app", db=db))``, or the error's message when the store refuses
    the URL (then True): a refusal must not show the password either."""
    try:
        wf = Workflow("app", db=db)
    except ValueError as exc:
        return str(exc), True
    return repr(wf), False


def assert_not_shown(password: str, shown: str, refused: bool) -> None:
    # An error may explain which characters need escaping ('#', '?' ...): a password
    # of one or two of them is looked for in the URLs it quotes only.
    where = re.findall(r"[a-z]+://[^'\s]*", shown) if refused and len(password) < 3 else [shown]
    for text in where:
        assert password not in text, shown
        assert repr(password)[1:-1] not in text, shown


@pytest.mark.parametrize("password", PASSWORDS)
def test_repr_of_a_redis_workflow_shows_no_password(password: str) -> None:
    pytest.importorskip("durable_redis")
    # Nothing listens on this port: making the Workflow and its repr must not connect.
    shown, refused = shown_for(f"redis://user:{password}@localhost:1/0")
    assert_not_shown(password, shown, refused)


def test_repr_of_the_issue_url_shows_no_password() -> None:
    pytest.importorskip("durable_redis")
    shown, _ = shown_for("redis://u:p#a/ss?@localhost:6379/0")
    assert "p#a" not in shown, shown
    assert "ss?" not in shown, shown
    assert "redis://u:***@localhost:6379/0" in shown, shown


class VerbatimStore(InMemoryStore):
    """A store whose repr shows its URL as given, and one rewritten (like redis-py's
    query re-encoding): repr(wf) must mask both."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    @classmethod
    def from_url(cls, url: str) -> VerbatimStore:
        return cls(url)

    def __repr__(self) -> str:
        rewritten = self.url.replace("@", "%40")
        return f"VerbatimStore({self.url!r}, as={rewritten!r})"


@pytest.fixture
def verbatim_scheme() -> Any:
    register_store("verbatim", VerbatimStore)
    yield "verbatim"
    unregister_store("verbatim")


@pytest.mark.parametrize("password", PASSWORDS)
def test_repr_of_a_workflow_masks_a_store_repr_that_shows_its_url(
    verbatim_scheme: str, password: str
) -> None:
    url = f"{verbatim_scheme}://user:{password}@db.example:1/0"
    wf = Workflow("app", db=url)
    assert repr(password)[1:-1] in repr(wf.store)  # the store itself does show it
    shown = repr(wf)
    assert password not in shown, shown
    assert repr(password)[1:-1] not in shown, shown
    assert shown.startswith("Workflow('app', db=VerbatimStore(")


def test_repr_of_a_workflow_on_a_store_object_masks_its_url() -> None:
    shown = repr(Workflow("app", db=VerbatimStore("verbatim://:s3#cr@h/0")))
    assert "s3#cr" not in shown
    assert "verbatim://:***@h/0" in shown


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db?password=s3cret",
        "sqlite:///x.db?durability=full&password=s3cret#frag",
        "sqlite:///x.db?secret=s3cret&cache=shared",
    ],
)
def test_sqlite_url_errors_show_no_password(url: str) -> None:
    pytest.importorskip("durable_sqlite")
    with pytest.raises(ValueError, match="unknown SQLite URL options") as info:
        Workflow("app", db=url)
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("url", ["sqlite://s3cret@host/x.db", "sqlite://u:s3/cr#et@host/x.db"])
def test_a_sqlite_url_with_a_host_shows_no_password(url: str) -> None:
    pytest.importorskip("durable_sqlite")
    with pytest.raises(ValueError, match="host") as info:
        Workflow("app", db=url)
    assert "s3" not in str(info.value)


@pytest.fixture
def leaky_scheme() -> Any:
    """A store scheme whose factory raises errors that repeat the URL, chained."""

    def factory(url: str) -> Any:
        try:
            raise OSError(f"low level: cannot open {url}")
        except OSError as exc:
            error = RuntimeError(f"leaky store {url!r} failed")
            error.add_note(f"while opening {url}")
            raise error from exc

    register_store("leaky", factory)
    yield "leaky://admin:s3#cr/et@db.example:5000/x"
    unregister_store("leaky")


def test_a_plugin_error_shows_no_password(leaky_scheme: str) -> None:
    with pytest.raises(RuntimeError) as info:
        Workflow("app", db=leaky_scheme)
    exc = info.value
    assert "s3#cr" not in str(exc)
    assert "db.example:5000" in str(exc)
    assert all("s3#cr" not in note for note in exc.__notes__)
    assert exc.__cause__ is not None
    assert "s3#cr" not in str(exc.__cause__)


def test_cli_errors_show_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("durable_sqlite")
    code = cli_main(["runs", "list", "--db", "sqlite:///x.db?password=s3cret"])
    assert code == 3
    err = capsys.readouterr().err
    assert "unknown SQLite URL options" in err
    assert "s3cret" not in err


def test_a_cli_traceback_shows_no_password(leaky_scheme: str) -> None:
    with pytest.raises(RuntimeError) as info:
        cli_main(["runs", "list", "--db", leaky_scheme])
    assert "s3#cr" not in str(info.value)
    assert "s3#cr" not in str(info.value.__cause__)


def test_log_lines_of_durable_show_no_password(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("durable")
    assert any(isinstance(f, UrlMaskingFilter) for f in log.filters)
    caplog.set_level(logging.DEBUG, logger="durable")
    log.warning("cannot reach %s, retrying", "redis://u:s3#cr@h:6379/0")
    try:
        raise ConnectionError("redis://:s3#cr@h:6379/0 refused")
    except ConnectionError:
        log.exception("recovery pass failed")
    assert "s3#cr" not in caplog.text
    assert "redis://u:***@h:6379/0" in caplog.text
    assert "redis://:***@h:6379/0 refused" in caplog.text


def test_mask_exception_leaves_other_arguments_alone() -> None:
    exc = OSError(2, "no such file: redis://u:pw@h/0")
    mask_exception(exc)
    assert exc.args == (2, "no such file: redis://u:***@h/0")
    plain = ValueError("nothing to hide", 3)
    mask_exception(plain, "redis://u:pw@h/0")
    assert plain.args == ("nothing to hide", 3)
