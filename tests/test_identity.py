"""Tokens of an identity provider: RS256 and ES256 keys from a JWKS served over HTTP (or a
file), rotation, the rate limit on refetches, issuer, audience and clock skew; then the
gateway and meeting_service both accepting such tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc
from gen.mesh.v1 import errors_pb2
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from mesh_common.auth import TokenVerifier, issue_token
from mesh_common.errors import MeshError
from mesh_common.jwks import JwksKeys
from mesh_common.settings import CommonSettings
from tests.support.gateway import gateway_settings, run_gateway
from tests.support.meeting import TEST_JWT_SECRET, make_token, meeting_settings
from tests.support.secrets import register_secret

ISSUER = "https://idp.example.test/"
AUDIENCE = "meeting-mesh-api"


@dataclass
class SigningKey:
    """A private key and its public JWK."""

    kid: str
    algorithm: str
    pem: str
    jwk: dict[str, Any]

    def token(self, user: str = "alice", **claims: Any) -> str:
        values: dict[str, Any] = {"audience": AUDIENCE, "issuer": ISSUER, **claims}
        return register_secret(
            issue_token(user, self.pem, algorithm=self.algorithm, kid=self.kid, **values)
        )


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def rsa_key(kid: str) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return SigningKey(kid, "RS256", _pem(key), {**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


def ec_key(kid: str) -> SigningKey:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return SigningKey(kid, "ES256", _pem(key), {**jwk, "kid": kid, "use": "sig", "alg": "ES256"})


@dataclass
class JwksServer:
    """An identity provider's JWKS endpoint on loopback; the test sets what it serves."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    failing: bool = False

    async def handle(self, _: web.Request) -> web.Response:
        self.fetches += 1
        if self.failing:
            return web.Response(status=500)
        return web.json_response({"keys": [k.jwk for k in self.keys]})


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_1() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="module")
def ec_1() -> SigningKey:
    return ec_key("ec-1")


@pytest_asyncio.fixture
async def idp(rsa_1: SigningKey, ec_1: SigningKey) -> AsyncIterator[JwksServer]:
    server = JwksServer(keys=[rsa_1, ec_1])
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/.well-known/jwks.json"
    try:
        yield server
    finally:
        await runner.cleanup()


def verifier(source: str | Path, clock: Clock, **claims: Any) -> TokenVerifier:
    keys = JwksKeys(source, min_refresh_s=60.0, clock=clock)
    values: dict[str, Any] = {"audience": AUDIENCE, "issuer": ISSUER, **claims}
    return TokenVerifier(jwks=keys, **values)


async def refusal(check: TokenVerifier, token: str) -> tuple[int, str]:
    with pytest.raises(MeshError) as caught:
        await check.verify(token)
    return caught.value.reason, caught.value.message


async def test_rs256_and_es256_tokens_verify_against_the_providers_jwks(
    idp: JwksServer, rsa_1: SigningKey, ec_1: SigningKey
) -> None:
    settings = CommonSettings(
        auth_jwks_url=idp.url, auth_issuer=ISSUER, auth_audience=AUDIENCE, jwt_secret=None
    )
    check = settings.token_verifier()
    assert (await check.verify(rsa_1.token("alice"))).user == "alice"
    assert (await check.verify(ec_1.token("bob"))).user == "bob"
    assert idp.fetches == 1  # cached
    # A key the provider does not publish, or the dev secret, signs nothing here.
    stranger = rsa_key("rsa-1")  # same kid, other key
    assert await refusal(check, stranger.token()) == (
        errors_pb2.ERROR_REASON_UNAUTHENTICATED,
        "invalid token",
    )
    hs = register_secret(issue_token("alice", TEST_JWT_SECRET, audience=AUDIENCE))
    assert (await refusal(check, hs))[1] == "token is signed by an unknown key"


async def test_a_rotated_key_is_fetched_on_its_first_token_within_the_rate_limit(
    idp: JwksServer, rsa_1: SigningKey
) -> None:
    clock = Clock()
    check = verifier(idp.url, clock)
    await check.verify(rsa_1.token())
    assert idp.fetches == 1
    rotated = ec_key("ec-2")
    idp.keys = [rotated]
    assert (await refusal(check, rotated.token()))[1] == "token is signed by an unknown key"
    assert idp.fetches == 1  # within min_refresh_s of the last fetch: no refetch
    clock.now += 61
    assert (await check.verify(rotated.token("carol"))).user == "carol"
    assert idp.fetches == 2  # the unknown kid was fetched at once...
    made_up = ec_key("no-such-kid")
    for _ in range(3):
        assert (await refusal(check, made_up.token()))[1] == "token is signed by an unknown key"
    assert idp.fetches == 2  # ...but unknown kids refetch at most once per min_refresh_s
    clock.now += 61
    assert (await refusal(check, made_up.token()))[1] == "token is signed by an unknown key"
    assert idp.fetches == 3


async def test_a_failed_fetch_keeps_the_keys_and_none_at_all_is_unavailable(
    idp: JwksServer, rsa_1: SigningKey
) -> None:
    clock = Clock()
    check = verifier(idp.url, clock)
    await check.verify(rsa_1.token("dave"))
    idp.failing = True
    clock.now += 3600  # past the cache: a refetch is due, and fails
    assert (await check.verify(rsa_1.token("erin"))).user == "erin"
    fresh = verifier(idp.url, Clock())
    reason, _ = await refusal(fresh, rsa_1.token())
    assert reason == errors_pb2.ERROR_REASON_AUTH_UNAVAILABLE


async def test_a_jwks_file_is_reread_for_a_new_kid(tmp_path: Path, rsa_1: SigningKey) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_1.jwk]}))
    clock = Clock()
    check = verifier(path, clock)
    await check.verify(rsa_1.token())
    rotated = rsa_key("rsa-2")
    path.write_text(json.dumps({"keys": [rsa_1.jwk, rotated.jwk]}))
    clock.now += 61
    assert (await check.verify(rotated.token("frank"))).user == "frank"


async def test_tokens_for_another_issuer_or_audience_are_refused(
    idp: JwksServer, ec_1: SigningKey
) -> None:
    check = verifier(idp.url, Clock())
    assert (await refusal(check, ec_1.token(issuer="https://other.example/")))[1] == (
        "token is from another issuer"
    )
    assert (await refusal(check, ec_1.token(audience="meeting-mesh")))[1] == (
        "token is for another audience"
    )
    assert (await refusal(check, ec_1.token(issuer=None)))[1] == "invalid token"  # no iss


async def test_clock_skew_is_tolerated_up_to_the_leeway(idp: JwksServer, ec_1: SigningKey) -> None:
    lenient = verifier(idp.url, Clock(), leeway_s=30.0)
    strict = verifier(idp.url, Clock(), leeway_s=0.0)
    expired_lately = ec_1.token(ttl_s=-10)
    from_the_near_future = ec_1.token(not_before_s=10)
    assert (await lenient.verify(expired_lately)).user == "alice"
    assert (await lenient.verify(from_the_near_future)).user == "alice"
    assert (await refusal(strict, expired_lately))[1] == "token expired"
    assert (await refusal(strict, from_the_near_future))[1] == "token is not valid yet"
    assert (await refusal(lenient, ec_1.token(ttl_s=-60)))[1] == "token expired"


async def test_the_gateway_and_meeting_service_accept_the_providers_tokens(
    idp: JwksServer,
    ec_1: SigningKey,
    database_url: str,
    tmp_path: Path,
) -> None:
    auth = {"auth_jwks_url": idp.url, "auth_issuer": ISSUER, "auth_audience": AUDIENCE}
    settings = meeting_settings(database_url, tmp_path, pipeline_workers=0, **auth)
    async with (
        run_meeting_service(settings, database=Database(database_url)) as service,
        run_gateway(gateway_settings(service.address, TEST_JWT_SECRET, **auth)) as gateway,
        aiohttp.ClientSession(gateway.url) as http,
        grpc.aio.insecure_channel(service.address) as channel,
    ):
        token = ec_1.token("grace")
        async with http.get("/v1/meetings", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        await stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        # The dev secret's tokens are not this deployment's.
        dev = {"Authorization": f"Bearer {make_token('grace')}"}
        async with http.get("/v1/meetings", headers=dev) as r:
            assert r.status == 401
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListMeetings(
                meeting_service_pb2.ListMeetingsRequest(),
                metadata=(("authorization", dev["Authorization"]),),
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
