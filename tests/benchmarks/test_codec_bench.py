"""The codec benchmark compares like with like: both sides do the same work."""

from __future__ import annotations

import json

import msgspec

from benchmarks import codec
from runtime import messages as m


def test_both_receive_paths_read_the_same_audio() -> None:
    ours = codec.ours_receive()
    sdk = codec.sdk_receive()
    assert ours.server_content.model_turn.parts[0].inline_data.data == codec.AUDIO_40MS_24K
    assert sdk.server_content.model_turn.parts[0].inline_data.data == codec.AUDIO_40MS_24K
    codec.ours_receive_with_session()  # the first frame opens the turn
    assert [type(e) for e in codec.ours_receive_with_session()] == [m.ModelAudio]


def test_both_send_paths_write_the_same_message() -> None:
    ours = json.loads(codec.ours_send())
    sdk = json.loads(codec.sdk_send())
    assert list(ours) == ["realtimeInput"]
    assert list(sdk) == ["realtime_input"]
    ours_audio = ours["realtimeInput"]["audio"]
    sdk_audio = sdk["realtime_input"]["audio"]
    decode = msgspec.json.Decoder(bytes)
    assert decode.decode(json.dumps(ours_audio["data"])) == codec.AUDIO_20MS_16K
    padded = sdk_audio["data"].replace("-", "+").replace("_", "/")
    assert decode.decode(json.dumps(padded + "=" * (-len(padded) % 4))) == codec.AUDIO_20MS_16K
    assert ours_audio["mimeType"] == sdk_audio["mime_type"] == codec.MIME_16K


def test_the_benchmark_runs_and_reports_ratios() -> None:
    results = codec.run(quick=True)
    for row in results.values():
        assert row["ours"]["median_us"] > 0
        assert row["google_genai"]["median_us"] > 0
        assert row["speedup_median"] > 0


def test_the_barge_in_benchmark_measures_something() -> None:
    from benchmarks import barge_in

    result = barge_in.run(quick=True)
    assert result["trials"] == 30
    assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
