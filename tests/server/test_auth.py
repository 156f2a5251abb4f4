"""Server keys, client secrets and open mode (relay.server.auth), on an injected clock."""

from __future__ import annotations

import pytest

from relay.errors import AuthenticationFailed, InvalidRequest
from relay.server.auth import DEFAULT_TTL, MAX_TTL, MIN_TTL, Authenticator
from relay.server.client_secrets import SecretSigner

SESSION = {"type": "realtime", "instructions": "bound to the secret"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_auth_server_keys_guard_calls_and_server_endpoints() -> None:
    auth = Authenticator(("sk-one", "sk-two"))
    assert auth.authorize_call(bearer("sk-two")) is None
    auth.require_server_key(bearer("sk-one"))
    assert auth.authorize_call("bearer sk-one") is None  # the scheme is case-insensitive
    for header in (None, "", "Bearer", bearer("sk-three"), "Basic sk-one", "sk-one"):
        with pytest.raises(AuthenticationFailed):
            auth.authorize_call(header)
        with pytest.raises(AuthenticationFailed):
            auth.require_server_key(header)


def test_auth_error_never_echoes_a_key() -> None:
    auth = Authenticator(("sk-server-secret",))
    with pytest.raises(AuthenticationFailed) as info:
        auth.authorize_call(bearer("sk-wrong-guess"))
    body = str(info.value.to_dict())
    assert "sk-server-secret" not in body and "sk-wrong-guess" not in body
    assert info.value.status == 401 and info.value.code == "invalid_api_key"


def test_auth_minted_secret_binds_its_session_until_it_expires() -> None:
    clock = Clock()
    auth = Authenticator(("sk-server",), clock=clock)
    secret = auth.mint(SESSION, 60)
    assert secret.value.startswith("ek_")
    assert secret.expires_at == int(clock.now) + 60
    assert auth.authorize_call(bearer(secret.value)) == SESSION
    clock.now += 59
    assert auth.authorize_call(bearer(secret.value)) == SESSION
    clock.now += 1
    with pytest.raises(AuthenticationFailed):
        auth.authorize_call(bearer(secret.value))


def test_auth_with_keys_an_unknown_client_secret_is_refused() -> None:
    auth = Authenticator(("sk-server",))
    with pytest.raises(AuthenticationFailed):
        auth.authorize_call(bearer("ek_never_minted_here"))


def test_auth_client_secret_is_no_server_key() -> None:
    for keys in ((), ("sk-server",)):
        auth = Authenticator(keys)
        secret = auth.mint(SESSION)
        with pytest.raises(AuthenticationFailed):
            auth.require_server_key(bearer(secret.value))


def test_auth_open_mode_accepts_any_bearer_even_a_foreign_client_secret() -> None:
    auth = Authenticator(())
    for header in (None, bearer("anything"), bearer("ek_minted_by_someone_else")):
        assert auth.authorize_call(header) is None
    auth.require_server_key(bearer("anything"))


def test_auth_open_mode_minted_secret_still_binds_its_session() -> None:
    clock = Clock()
    auth = Authenticator((), clock=clock)
    secret = auth.mint(SESSION, MIN_TTL)
    assert auth.authorize_call(bearer(secret.value)) == SESSION
    clock.now += MIN_TTL
    # Expired, it is one more bearer: accepted, but its session no longer applies.
    assert auth.authorize_call(bearer(secret.value)) is None


@pytest.mark.parametrize("ttl", [MIN_TTL, DEFAULT_TTL, MAX_TTL])
def test_auth_mint_accepts_ttls_within_bounds(ttl: int) -> None:
    clock = Clock()
    secret = Authenticator((), clock=clock).mint(SESSION, ttl)
    assert secret.expires_at == int(clock.now) + ttl


@pytest.mark.parametrize("ttl", [-1, 0, MIN_TTL - 1, MAX_TTL + 1])
def test_auth_mint_refuses_ttls_out_of_bounds(ttl: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        Authenticator(()).mint(SESSION, ttl)
    assert info.value.param == "expires_after.seconds" and info.value.status == 400


def test_auth_secrets_minted_by_one_relay_work_on_another_sharing_the_secret() -> None:
    clock = Clock()
    minting = Authenticator(("sk-a",), clock=clock, signer=SecretSigner("s" * 32))
    other = Authenticator(("sk-b",), clock=clock, signer=SecretSigner("s" * 32))
    stranger = Authenticator(("sk-b",), clock=clock, signer=SecretSigner("t" * 32))
    secret = minting.mint(SESSION, 60)
    assert other.authorize_call(bearer(secret.value)) == SESSION
    with pytest.raises(AuthenticationFailed):
        stranger.authorize_call(bearer(secret.value))
    clock.now += 60
    with pytest.raises(AuthenticationFailed) as info:
        other.authorize_call(bearer(secret.value))
    assert "expired" in info.value.message


def test_auth_secrets_are_stateless_and_distinct() -> None:
    auth = Authenticator(("sk-server",), clock=Clock())
    first, second = auth.mint(SESSION, 60), auth.mint(SESSION, 60)
    assert first.value != second.value
    assert not [v for v in vars(auth).values() if isinstance(v, dict)]


def test_auth_client_secret_id_names_live_minted_keys_only() -> None:
    clock = Clock()
    auth = Authenticator(("sk-server",), clock=clock)
    secret = auth.mint(SESSION, MIN_TTL)
    key = auth.client_secret_id(bearer(secret.value))
    assert key is not None and secret.value not in key
    assert auth.client_secret_id(bearer(secret.value)) == key
    assert auth.client_secret_id(bearer("sk-server")) is None
    assert auth.client_secret_id(bearer("ek_forged")) is None
    clock.now += MIN_TTL
    assert auth.client_secret_id(bearer(secret.value)) is None
