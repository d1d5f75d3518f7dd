"""The service reads the Whisper options from form and JSON fields, as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_wav
from tests.service_app import service_config, serving
from vramscribe.store.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_form_and_json_fields_reach_the_job_and_bad_values_are_422(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    wav = write_wav(root / "talk.wav", 2.0)
    config = service_config(tmp_path, allowed_roots=(root.resolve(),))
    async with serving(config) as client:
        form = await client.post(
            "/v1/jobs",
            files={"file": ("talk.wav", wav.read_bytes())},
            data={"task": "translate", "best_of": "3", "logprob_threshold": "-0.5",
                  "vad_onset": "0.4", "max_line_width": "42", "highlight_words": "True"},
        )  # fmt: skip
        assert form.status_code == 201, form.text
        by_path = await client.post(
            "/v1/jobs", json={"path": "talk.wav", "temperature": [0, 0.4],
                              "condition_on_previous_text": False, "suppress_tokens": "-1,50"},
        )  # fmt: skip
        assert by_path.status_code == 201, by_path.text
        for body, words in (
            ({"path": "talk.wav", "best_of": 0}, "best_of must be a whole number of at least 1"),
            ({"path": "talk.wav", "task": "summarise"}, "task must be transcribe or translate"),
            ({"path": "talk.wav", "no_speech_threshold": 3}, "no_speech_threshold must be"),
            ({"path": "talk.wav", "bestof": 3}, "unknown fields: bestof"),
        ):
            refused = await client.post("/v1/jobs", json=body)
            assert refused.status_code == 422 and words in refused.text, refused.text
        bad_form = await client.post(
            "/v1/jobs", files={"file": ("talk.wav", wav.read_bytes())},
            data={"highlight_words": "maybe"},
        )  # fmt: skip
        assert bad_form.status_code == 422 and "highlight_words must be True or False" in (
            bad_form.text
        )
    with Store.open_data_dir(config.data_dir) as store:
        first, second = store.get(form.json()["id"]), store.get(by_path.json()["id"])
    assert first is not None and second is not None
    assert first.options["decoding"] == {
        "task": "translate", "best_of": 3, "log_prob_threshold": -0.5, "vad_threshold": 0.4,
    }  # fmt: skip
    assert first.options["layout"] == {"max_line_width": 42, "highlight_words": True}
    assert first.options["word_timestamps"] is True  # the layout needs word timings
    assert second.options["decoding"] == {
        "temperature": [0.0, 0.4], "condition_on_previous_text": False,
        "suppress_tokens": [-1, 50],
    }  # fmt: skip
