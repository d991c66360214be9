import time

import pytest
from pydantic import ValidationError

from gateway.keys import KeyRecord, KeySpec, hash_secret, new_token, parse_token


def _record(**fields: object) -> KeyRecord:
    token = new_token()
    values = {
        "key_id": token.key_id,
        "tenant": "acme",
        "created_at": time.time(),
        "secret_hash": hash_secret(token.secret),
        "secret_hint": "abcd",
    }
    return KeyRecord(**{**values, **fields})


def test_token_format_round_trips_and_shows_the_key_id() -> None:
    token = new_token()
    text = str(token)
    assert text.startswith(f"gwk_{token.key_id}_")
    assert len(token.key_id) == 12 and len(token.secret) == 40
    assert parse_token(text) == token


@pytest.mark.parametrize(
    "text", ["", "gwk_short_x", "r8_abcdefabcdefabcdefabcdef", "gwk_ABCDEFGHIJKL_" + "a" * 40, "gwk_abcdefghijkl_" + "a" * 39]
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert parse_token(text) is None


def test_only_the_hash_is_kept_and_it_matches_only_the_secret() -> None:
    token = new_token()
    record = _record(key_id=token.key_id, secret_hash=hash_secret(token.secret))
    assert token.secret not in record.model_dump_json()
    assert record.matches(token.secret, time.time())
    assert not record.matches(new_token().secret, time.time())
    assert hash_secret("x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_previous_secret_works_only_inside_its_grace_period() -> None:
    old = new_token()
    record = _record(previous_secret_hash=hash_secret(old.secret), previous_valid_until=1000.0)
    assert record.matches(old.secret, 999.0)
    assert not record.matches(old.secret, 1000.0)


@pytest.mark.parametrize(
    "patterns,model,version,allowed",
    [
        (["*"], "a/b", "1" * 64, True),
        (["a/b"], "a/b", "1" * 64, True),
        (["a/b"], "a/c", "1" * 64, False),
        (["a/*"], "a/c", "1" * 64, True),
        ([f"a/b:{'1' * 64}"], "a/b", "1" * 64, True),
        ([f"a/b:{'1' * 64}"], "a/b", "2" * 64, False),
        (["a/b:1*"], "a/b", "1" * 64, True),
        ([], "a/b", "1" * 64, False),
    ],
)
def test_model_allow_list(patterns: list[str], model: str, version: str, allowed: bool) -> None:
    assert _record(models=patterns).allows(model, version) is allowed


def test_public_view_hides_hashes_but_hints_at_the_token() -> None:
    record = _record()
    shown = record.public()
    assert "secret_hash" not in shown and "previous_secret_hash" not in shown
    assert shown["token_hint"] == f"gwk_{record.key_id}_…abcd"


def test_spec_refuses_bad_patterns_scopes_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="is not owner/name"):
        KeySpec(models=["not a pattern"])
    with pytest.raises(ValidationError):
        KeySpec(scopes=["admin"])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        KeySpec.model_validate({"secret_hash": "x"})
