"""Starting a provider login: the URLs the provider packages build (Facebook Login, Instagram
Login, X with PKCE) and the console's login-state cookie (console/connect.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from parley_events import Provider
from parley_onboarding.console.connect import STATE_COOKIE, LoginState, LoginStates, session_hash
from parley_onboarding.console.session import SESSION_COOKIE
from parley_onboarding.settings import OnboardingSettings
from parley_providers import registry
from parley_providers.base import AccountLoginStart, PageLoginStart, PkceLoginStart, SignupWindowStart
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_shared.vault import TokenVault
from starlette.requests import Request

pytestmark = pytest.mark.unit

REDIRECT = "https://parley.example.com/console/connect/facebook/callback"
BASE: dict[str, Any] = {
    "encryption_keys": "k1:" + "A" * 43 + "=",
    "meta_app_id": "1234567890",
    "meta_app_secret": "app-secret",
    "jwt_hs256_secret": "jwt-secret-for-unit-tests-only-32b",
    "topic_namespace": "",
    "consumer_group_prefix": "parley",
    "instagram_app_id": "990602627938098",
    "instagram_app_secret": "ig-secret",
    "x_client_id": "x-client",
    "x_client_secret": "x-secret",
    "x_webhook_id": "x-webhook",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def test_facebook_login_asks_for_the_page_and_instagram_permissions_on_facebooks_dialog(
    http: httpx.AsyncClient,
) -> None:
    pages = registry.connectors(http, OnboardingSettings(**BASE))[Provider.MESSENGER]
    assert isinstance(pages, PageLoginStart)
    url = pages.page_login_url(REDIRECT, "st4te")
    assert where(url) == f"https://www.facebook.com/{DEFAULT_GRAPH_API_VERSION}/dialog/oauth"
    params = query(url)
    assert params["client_id"] == "1234567890"
    assert params["redirect_uri"] == REDIRECT
    assert params["state"] == "st4te"
    assert params["response_type"] == "code"
    scope = params["scope"].split(",")
    assert {
        "pages_show_list",
        "pages_messaging",
        "pages_manage_metadata",
        "instagram_manage_messages",
    } <= set(scope)
    assert "config_id" not in params


def test_a_login_for_business_configuration_replaces_the_scope_and_the_host_is_a_setting(
    http: httpx.AsyncClient,
) -> None:
    settings = OnboardingSettings(
        **BASE,
        meta_login_config_id="cfg-42",
        meta_login_base_url="http://127.0.0.1:8090",
        graph_api_version="v24.0",
    )
    pages = registry.connectors(http, settings)[Provider.MESSENGER]
    assert isinstance(pages, PageLoginStart)
    url = pages.page_login_url(REDIRECT, "s")
    assert where(url) == "http://127.0.0.1:8090/v24.0/dialog/oauth"
    assert query(url)["config_id"] == "cfg-42"
    assert "scope" not in query(url)


def test_instagram_login_opens_instagrams_authorization_window(http: httpx.AsyncClient) -> None:
    login = registry.connectors(http, OnboardingSettings(**BASE))[Provider.INSTAGRAM]
    assert isinstance(login, AccountLoginStart)
    redirect = "https://parley.example.com/console/connect/instagram/callback"
    url = login.account_login_url(redirect, "st")
    assert where(url) == "https://www.instagram.com/oauth/authorize"
    assert query(url) == {
        "client_id": "990602627938098",
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "instagram_business_basic,instagram_business_manage_comments,"
        "instagram_business_manage_messages",
        "state": "st",
    }


def test_x_authorization_carries_the_s256_challenge_of_the_verifier(http: httpx.AsyncClient) -> None:
    settings = OnboardingSettings(**BASE, x_authorize_base_url="http://sandbox:8090")
    accounts = registry.connectors(http, settings)[Provider.X]
    assert isinstance(accounts, PkceLoginStart)
    # RFC 7636, appendix B: this verifier's S256 challenge
    url = accounts.authorize_url(REDIRECT, "st", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert where(url) == "http://sandbox:8090/i/oauth2/authorize"
    params = query(url)
    assert params["code_challenge"] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert params["code_challenge_method"] == "S256"
    assert (params["response_type"], params["client_id"], params["state"]) == ("code", "x-client", "st")
    assert set(params["scope"].split(" ")) >= {"dm.read", "dm.write", "users.read", "offline.access"}
    assert "dBjftJeZ4CVP" not in url  # the verifier itself never travels through the browser


def test_without_its_app_a_login_is_not_offered(http: httpx.AsyncClient) -> None:
    bare = {k: v for k, v in BASE.items() if not k.startswith(("instagram_", "x_"))}
    connectors = registry.connectors(http, OnboardingSettings(**bare))
    assert not isinstance(connectors.get(Provider.INSTAGRAM), AccountLoginStart)
    assert Provider.X not in connectors


# --- the login-state cookie ---------------------------------------------------------------------

KEY = base64.b64decode("A" * 43 + "=")
SESSION = "the-session-token"


def request(cookies: dict[str, str], state: str) -> Request:
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/console/connect/x/callback",
            "headers": [(b"cookie", cookie.encode()), (b"host", b"127.0.0.1")],
            "query_string": f"state={state}&code=c".encode(),
        }
    )


def started(states: LoginStates, **changes: Any) -> str:
    session = session_hash(request({SESSION_COOKIE: SESSION}, ""))
    login = LoginState(
        flow="x",
        state="s" * 43,
        tenant_id="t",
        user_id="u",
        session=session,
        expires_at=1000.0,
        verifier="v" * 64,
    )
    return states.seal(LoginState(**{**login.__dict__, **changes}))


def test_the_state_cookie_opens_only_for_its_state_flow_admin_and_session_before_its_end() -> None:
    states = LoginStates(TokenVault({"k1": KEY}))
    sealed = started(states)
    good = request({SESSION_COOKIE: SESSION, STATE_COOKIE: sealed}, "s" * 43)

    login = states.check(good, "x", "t", "u", now=999.0)
    assert isinstance(login, LoginState)
    assert login.verifier == "v" * 64
    assert "v" * 64 not in sealed  # sealed, not only signed: the browser cannot read the verifier

    assert states.check(good, "x", "t", "u", now=1000.0) == "oauth_state_expired"
    assert states.check(good, "facebook", "t", "u", now=0) == "oauth_state_mismatch"
    assert states.check(good, "x", "t", "someone-else", now=0) == "oauth_state_mismatch"
    assert states.check(good, "x", "other-tenant", "u", now=0) == "oauth_state_mismatch"
    other_state = request({SESSION_COOKIE: SESSION, STATE_COOKIE: sealed}, "t" * 43)
    assert states.check(other_state, "x", "t", "u", now=0) == "oauth_state_mismatch"
    other_session = request({SESSION_COOKIE: "another-session", STATE_COOKIE: sealed}, "s" * 43)
    assert states.check(other_session, "x", "t", "u", now=0) == "oauth_state_mismatch"
    no_cookie = request({SESSION_COOKIE: SESSION}, "s" * 43)
    assert states.check(no_cookie, "x", "t", "u", now=0) == "oauth_state_missing"


def test_a_state_cookie_sealed_with_another_key_or_altered_is_refused() -> None:
    states = LoginStates(TokenVault({"k1": KEY}))
    foreign = started(LoginStates(TokenVault({"k1": b"\x01" * 32})))
    assert states.open(foreign) is None
    sealed = started(states)
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    assert states.open(flipped) is None
    assert states.open("not base64 at all!") is None


def test_embedded_signup_s_window_is_offered_only_where_it_can_come_back_without_script(
    http: httpx.AsyncClient,
) -> None:
    signup = {**BASE, "whatsapp_embedded_signup_config_id": "778899"}
    redirect = "https://parley.example.com/console/connect/whatsapp/callback"
    # Meta's own window hands its result to the JavaScript SDK only: no redirect brings the ids
    on_meta = registry.connectors(http, OnboardingSettings(**signup))[Provider.WHATSAPP]
    assert isinstance(on_meta, SignupWindowStart)
    assert on_meta.signup_window_url(redirect, "st") is None
    # a stand-in for Meta's login host (the sandbox) opens the Login dialog with the configuration
    sandbox = {**signup, "meta_login_base_url": "http://127.0.0.1:8090"}
    numbers = registry.connectors(http, OnboardingSettings(**sandbox))[Provider.WHATSAPP]
    assert isinstance(numbers, SignupWindowStart)
    url = numbers.signup_window_url(redirect, "st")
    assert url is not None
    assert where(url) == f"http://127.0.0.1:8090/{DEFAULT_GRAPH_API_VERSION}/dialog/oauth"
    assert query(url) == {
        "client_id": "1234567890",
        "config_id": "778899",
        "redirect_uri": redirect,
        "state": "st",
        "response_type": "code",
        "override_default_response_type": "true",
    }
    # without the configuration there is no signup to open
    unset = registry.connectors(http, OnboardingSettings(**{**BASE, "meta_login_base_url": "http://sb"}))
    numbers = unset[Provider.WHATSAPP]
    assert isinstance(numbers, SignupWindowStart) and numbers.signup_window_url(redirect, "st") is None
