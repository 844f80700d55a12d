"""The main job, run as a user runs it (`make run` runs this script), against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run examples/SCRIPT.py as a user would, with no API key in the environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},  # no GOOGLE_API_KEY: the built-in emulator
        cwd=cwd,
    )


def test_a_whole_conversation_from_the_command_line(tmp_path: Path) -> None:
    reply, events = tmp_path / "reply.wav", tmp_path / "events.jsonl"
    result = run_example(
        "supervisor", tmp_path, "--fast", "--output", str(reply), "--events", str(events)
    )
    assert result.returncode == 0, result.stderr
    assert "you  : What's the weather like in Paris today?" in result.stdout
    assert "tool : get_weather" in result.stdout
    assert "agent: It is twenty-one degrees and sunny in Paris today." in result.stdout
    assert "done: 1 turn(s), 1 tool call(s)" in result.stdout
    with wave.open(str(reply), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (24000, 1, 2)
        assert audio.getnframes() / 24000 > 2.0  # the spoken reply
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert all("type" in r and isinstance(r["t"], float) for r in records)
    by_type = {r["type"]: r for r in records}
    assert (
        by_type["input_speech_transcription_completed"]["transcript"]
        == "What's the weather like in Paris today?"
    )
    assert by_type["agent_speech_transcription_completed"]["transcript"].startswith(
        "It is twenty-one degrees"
    )
    call = by_type["function_calls_collected"]
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    assert by_type["function_calls_finished"]["result"] == {
        "city": "Paris",
        "temperature_c": 21.0,
        "sky": "sunny",
    }
    assert by_type["function_calls_finished"]["call_id"] == call["call_id"]
    latencies = [
        r["value"] for r in records if r["type"] == "metrics" and r["name"] == "time_to_first_audio"
    ]
    assert len(latencies) == 1
    assert 0 < latencies[0] < 5
    times = [r["t"] for r in records]
    assert times == sorted(times)


def test_a_fatal_error_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    result = run_example("supervisor", tmp_path, "--input", str(tmp_path / "missing.wav"), "--fast")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read {tmp_path / 'missing.wav'}: No such file or directory"
    ]


def test_video_frames_beside_the_audio(tmp_path: Path) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for index, color in enumerate(["red", "blue"]):
        Image.new("RGB", (320, 240), color).save(frames / f"{index}.png")
    result = run_example("supervisor", tmp_path, "--fast", "--video", str(frames))
    assert result.returncode == 0, result.stderr
    assert "done: 1 turn(s)" in result.stdout


def test_no_speaker_device_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_example("supervisor", tmp_path, "--fast", "--speaker")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the speaker needs sounddevice")


def test_the_custom_pipeline_example_swaps_playout_for_a_meter(tmp_path: Path) -> None:
    result = run_example("custom_pipeline", tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("reply 1: peak ")
    assert -20 < float(line.split()[3]) < 0  # the synthesized reply's peak level, in dBFS


def test_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    import signal

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "supervisor.py")],  # real-time: 2.7 s of speech
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("(no GOOGLE_API_KEY")  # mid-conversation now
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in err
