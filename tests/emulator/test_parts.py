"""The emulator's sans-IO parts: scenarios, the activity detector, audio, handshakes."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from emulator import Reply, Scenario, ScenarioError, load_scenario
from emulator.audio import AudioFileError, level_dbfs, read_wav, synthesize_speech
from emulator.handshake import parse_handshake
from emulator.vad import EnergyVad
from protocol import wire as w


def tone(seconds: float, dbfs: float, rate: int = 16000, freq: float = 220.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    amplitude = 10 ** (dbfs / 20) * np.sqrt(2)  # RMS of a sine is amplitude / sqrt(2)
    pcm: bytes = (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()
    return pcm


def silence(seconds: float) -> bytes:
    return bytes(2 * int(16000 * seconds))


def write_wav(
    path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2
) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        dtype = {1: "u1", 2: "<i2"}[width]
        scale = 127 if width == 1 else 32767
        wav.writeframes((samples * scale + (128 if width == 1 else 0)).astype(dtype).tobytes())
    return path


# --- scenarios ----------------------------------------------------------------------------


def test_json_and_toml_scenarios(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        'faults = [{ spec = "drop:after=3" }]\n'
        '[[turns]]\nuser = "Hi"\n[[turns.replies]]\ntool_calls = [{ name = "f", args = { a = 1 } }]\n'
        '[[turns.replies]]\nsay = "Hello"\n[behaviour]\npace = "bursty"\n'
    )
    scenario = load_scenario(toml)
    assert scenario.turns[0].user == "Hi"
    assert scenario.turns[0].replies[0].tool_calls[0].args == {"a": 1}
    assert scenario.behaviour.pace == "bursty"
    assert scenario.faults[0].spec == "drop:after=3"
    as_json = tmp_path / "s.json"
    as_json.write_text('{"turns": [{"user": "Hi", "replies": [{"say": "Hello"}]}]}')
    assert load_scenario(as_json).turns[0].replies == (Reply(say="Hello"),)


def test_past_the_script_the_default_reply_is_used() -> None:
    scenario = Scenario()
    assert scenario.turn(5).replies == (scenario.default_reply,)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[behaviour]\npaec = 'fast'\n", "paec"),
        ("[behaviour]\npace = 'sometimes'\n", "pace"),
        ("[[turns]]\nuser = 5\n", "turns[0].user"),
        ("[behaviour]\nchunk_ms = 0\n", "chunk_ms"),
        ("[[turns]\n", "line 1"),
        ("[[turns]]\n[[turns.replies]]\naudio = 'missing.wav'\n", "turns[0].replies[0].audio"),
    ],
)
def test_bad_scenarios_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=re.escape(words)):
        load_scenario(path)


def test_an_unreadable_scenario_file() -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/scenario.json")


# --- activity detection ---------------------------------------------------------------------


def test_speech_starts_after_prefix_padding_and_ends_after_the_silence_duration() -> None:
    vad = EnergyVad.from_config(
        w.AutomaticActivityDetection(prefix_padding_ms=100, silence_duration_ms=300)
    )
    assert vad.feed(tone(0.05, -20)) == []  # 50 ms of speech: not yet
    assert vad.feed(tone(0.06, -20)) == ["start"]
    assert vad.feed(silence(0.2) + tone(0.05, -20)) == []  # a pause shorter than 300 ms
    assert vad.feed(silence(0.29)) == []
    assert vad.feed(silence(0.02)) == ["end"]


def test_a_blip_shorter_than_the_prefix_padding_is_not_speech() -> None:
    vad = EnergyVad.from_config(w.AutomaticActivityDetection(prefix_padding_ms=100))
    assert vad.feed(tone(0.05, -20) + silence(0.5) + tone(0.05, -20)) == []


@pytest.mark.parametrize(
    ("sensitivity", "heard"), [("START_SENSITIVITY_HIGH", True), ("START_SENSITIVITY_LOW", False)]
)
def test_start_sensitivity_decides_how_quiet_speech_can_be(
    sensitivity: w.StartSensitivity, heard: bool
) -> None:
    config = w.AutomaticActivityDetection(start_of_speech_sensitivity=sensitivity)
    assert (EnergyVad.from_config(config).feed(tone(0.3, -44)) == ["start"]) is heard


def test_end_sensitivity_high_ends_sooner_on_trailing_quiet_speech() -> None:
    def ends(sensitivity: w.EndSensitivity) -> bool:
        config = w.AutomaticActivityDetection(
            end_of_speech_sensitivity=sensitivity, silence_duration_ms=100
        )
        vad = EnergyVad.from_config(config)
        return "end" in vad.feed(tone(0.2, -20) + tone(0.3, -47))  # trailing murmur

    assert ends("END_SENSITIVITY_HIGH")
    assert not ends("END_SENSITIVITY_LOW")


def test_chunking_does_not_change_the_result() -> None:
    audio = tone(0.3, -20) + silence(0.6) + tone(0.3, -20) + silence(0.6)
    whole = EnergyVad().feed(audio)
    pieces = EnergyVad()
    split = [t for i in range(0, len(audio), 333 * 2) for t in pieces.feed(audio[i : i + 333 * 2])]
    assert whole == split == ["start", "end", "start", "end"]


def test_force_end() -> None:
    vad = EnergyVad()
    vad.feed(tone(0.1, -20))
    assert vad.force_end()
    assert not vad.speaking
    assert not vad.force_end()


# --- audio ----------------------------------------------------------------------------------


def test_synthetic_speech_length_follows_the_text_and_is_deterministic() -> None:
    short, long = synthesize_speech("one two"), synthesize_speech("one two three four five six")
    assert len(long) == 3 * len(short)
    assert len(short) == 2 * 2 * int(0.28 * 24000)
    assert synthesize_speech("one two") == short
    assert -30 < level_dbfs(short) < -6


def test_read_wav_downmixes_and_resamples(tmp_path: Path) -> None:
    t = np.arange(48000) / 48000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).reshape(-1)
    pcm = read_wav(write_wav(tmp_path / "a.wav", stereo, 48000, channels=2))
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    assert abs(samples.size - 24000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 24000 / samples.size - 440) < 2
    assert level_dbfs(pcm) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)


def test_read_wav_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"missing\.wav"):
        read_wav(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all")
    with pytest.raises(AudioFileError, match=r"garbage\.wav"):
        read_wav(garbage)
    eight_bit = write_wav(tmp_path / "8bit.wav", np.zeros(100), 8000, width=1)
    with pytest.raises(AudioFileError, match="16-bit"):
        read_wav(eight_bit)


# --- handshakes ------------------------------------------------------------------------------


def test_handshake_paths_and_credentials() -> None:
    gemini = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    shake = parse_handshake("/" + gemini + "?key=k1", [])
    assert shake is not None
    assert (shake.api, shake.version, shake.credential, shake.ephemeral) == (
        "gemini",
        "v1beta",
        "k1",
        False,
    )
    vertex = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    shake = parse_handshake(vertex, [(b"Authorization", b"Bearer tok")])
    assert shake is not None
    assert (shake.api, shake.credential) == ("vertex", "tok")
    constrained = gemini.replace("v1beta", "v1alpha") + "Constrained?access_token=auth_tokens/x"
    shake = parse_handshake(constrained, [])
    assert shake is not None
    assert (shake.credential, shake.ephemeral) == ("auth_tokens/x", True)
    assert parse_handshake("/ws/other", []) is None
    assert (
        parse_handshake(
            "/ws/google.ai.generativelanguage.v9.GenerativeService.BidiGenerateContent", []
        )
        is None
    )


def test_a_chunk_too_big_for_one_frame_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("[behaviour]\nchunk_ms = 60000\n")
    with pytest.raises(ScenarioError, match="chunk_ms"):
        load_scenario(path)


def test_a_scenario_with_the_newer_fields(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        "[[turns]]\nuser = 'Q'\nwaiting_for_input = true\n"
        "[[turns.replies]]\nmeanwhile = 'Hold on.'\n"
        "tool_calls = [{ name = 'f', progress = 'Still going.' }]\n"
        "[[turns.replies]]\nsay = 'A'\n"
        "search = { queries = ['q'], results = [{ uri = 'https://x', title = 'X' }] }\n"
        "code = { code = 'print(1)', output = '1' }\nurls = [{ url = 'https://x' }]\n"
        "[behaviour]\nunknown_models = 'refuse'\nmodels = ['gemini-4-*']\n"
        "[behaviour.families.'3.8']\ninteraction_status = true\n"
        "thinking_levels = ['LOW']\n"
    )
    scenario = load_scenario(toml)
    turn = scenario.turns[0]
    assert turn.waiting_for_input
    assert turn.replies[0].meanwhile == "Hold on."
    assert turn.replies[0].tool_calls[0].progress == "Still going."
    assert turn.replies[1].search is not None
    assert turn.replies[1].search.results[0].uri == "https://x"
    families = scenario.behaviour.families_in_force()
    assert families["3.8"].interaction_status
    assert families["3.8"].thinking_levels == frozenset({"LOW"})
    assert families["3.8"].default_tool_behavior == "NON_BLOCKING"  # the rest: the family's
    assert not families["3.1"].interaction_status


def test_an_unknown_family_in_a_scenario_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[behaviour.families.'4.0']\ninteraction_status = true\n")
    with pytest.raises(ScenarioError, match=re.escape("no family '4.0'")):
        load_scenario(path)
