"""The streaming demo model (models/typewriter) on a real Cog server: its webhooks become a live event stream."""

from __future__ import annotations

import httpx
import replicate

from tests.cog.conftest import TYPEWRITER_VERSION, CogGateway

PROMPT = "the quick brown fox jumps over the lazy dog"
MODEL = f"test/typewriter:{TYPEWRITER_VERSION}"


def test_the_python_client_streams_the_words_as_the_model_yields_them(cog_gateway: CogGateway) -> None:
    token, _ = cog_gateway.new_key()
    transport = httpx.HTTPTransport(verify=cog_gateway.client_ssl_context())
    client = replicate.Client(api_token=token, base_url=cog_gateway.public_url, transport=transport)
    prediction = client.predictions.create(version=TYPEWRITER_VERSION, input={"prompt": PROMPT, "seconds_per_token": 0.3})
    words, status_at_first_word = [], None
    for event in prediction.stream():
        if event.event.value == "output":
            words.append(str(event))
            status_at_first_word = status_at_first_word or client.predictions.get(prediction.id).status
    assert "".join(words) == PROMPT and len(words) == len(PROMPT.split(" "))
    assert status_at_first_word == "processing"  # streamed while the model ran, not replayed at the end
    assert event.event.value == "done" and event.data == "{}"
    logs = client.predictions.get(prediction.id).logs or ""
    assert logs == "typing 9 words\ntyped 9 words\n"


def test_replicate_stream_validates_against_the_models_own_schema(cog_gateway: CogGateway) -> None:
    token, _ = cog_gateway.new_key()
    transport = httpx.HTTPTransport(verify=cog_gateway.client_ssl_context())
    client = replicate.Client(api_token=token, base_url=cog_gateway.public_url, transport=transport)
    assert "".join(str(e) for e in client.stream(MODEL, input={"prompt": "one two", "seconds_per_token": 0})) == "one two"
    try:
        list(client.stream(MODEL, input={"prompt": "x", "max_tokens": 0}))
    except replicate.exceptions.ReplicateError as error:
        assert error.status == 422 and "max_tokens" in str(error.detail)
    else:
        raise AssertionError("an invalid input was streamed")
