"""The main job, run as a user runs it (`make run` runs this script), against the emulator.

Every case of issue 14 is here: each run is a subprocess, bounded in time, and a failure
must be exit status 1 with exactly one line on stderr naming the cause."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "supervisor.py"
QUESTION = ROOT / "examples" / "assets" / "question.wav"
NO_KEY = {"PATH": "/usr/bin:/bin"}  # no GOOGLE_API_KEY: the built-in emulator


def run_example(
    script: str,
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preload: str = "",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run examples/SCRIPT.py as a user would (by default with no API key). ``preload``
    is Python run first, in the same process (to simulate the world: no DNS, a Ctrl+C)."""
    path = ROOT / "examples" / f"{script}.py"
    command = [sys.executable, str(path), *args]
    if preload:
        runner = f"{preload}\nimport runpy, sys\nsys.argv = {[str(path), *args]!r}\n"
        runner += f"runpy.run_path({str(path)!r}, run_name='__main__')"
        command = [sys.executable, "-c", runner]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env or NO_KEY, cwd=cwd
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed run printed; asserts it failed that way."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def question() -> tuple[np.ndarray, int]:
    """The bundled question's samples (mono PCM16) and rate."""
    with wave.open(str(QUESTION), "rb") as audio:
        assert audio.getnchannels() == 1
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
        return samples, audio.getframerate()


def fast_scenario(tmp_path: Path, say: str = "Sunny, twenty-one degrees.") -> Path:
    """The demo's turn with a short reply, streamed as fast as it goes (for runs whose
    point is not the pacing)."""
    path = tmp_path / "fast.json"
    turn = {
        "user": "What's the weather like in Paris today?",
        "replies": [
            {"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]},
            {"say": say},
        ],
    }
    path.write_text(json.dumps({"turns": [turn], "behaviour": {"pace": "fast"}}))
    return path


def closed_port() -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    return port


@contextmanager
def emulator_process(tmp_path: Path, *args: str) -> Iterator[list[str]]:
    """`python -m emulator ARGS` on a free port, replying fast: its ready line, split."""
    scenario = fast_scenario(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-m", "emulator", "--scenario", str(scenario), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=NO_KEY,
    ) as process:
        try:
            assert process.stdout is not None
            ready = process.stdout.readline().split()
            assert ready[0] == "ready", ready
            yield ready
        finally:
            process.terminate()


# --- a whole conversation -------------------------------------------------------------------


def test_a_whole_conversation_from_the_command_line(tmp_path: Path) -> None:
    reply, events = tmp_path / "reply.wav", tmp_path / "events.jsonl"
    result = run_example(
        "supervisor",
        tmp_path,
        "--output",
        str(reply),
        "--events",
        str(events),
        "--fast",
        "--quiet",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the library logs, never prints
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
    times = [r["t"] for r in records]
    assert times == sorted(times)


def test_the_user_transcript_from_the_emulator_is_labelled_scripted(tmp_path: Path) -> None:
    # Issue 14: "you :" printed the emulator's script whatever was said, unmarked.
    scenario = fast_scenario(tmp_path)
    result = run_example(
        "supervisor", tmp_path, "--fast", "--quiet", "0.5", "--scenario", str(scenario)
    )
    assert result.returncode == 0, result.stderr
    you = [line for line in result.stdout.splitlines() if line.startswith("you  :")]
    assert you == [
        "you  : What's the weather like in Paris today? "
        "[scripted by the emulator, not what was said]"
    ]


@pytest.mark.parametrize("order", ["reply ends before the input", "reply ends after the input"])
def test_the_end_rule_in_both_orders(tmp_path: Path, order: str) -> None:
    # Issue 14: main exited only when the last reply finished playing after the input
    # ended; with trailing silence (the normal case with a real server) it waited forever.
    trailing = 5.0 if order == "reply ends before the input" else 0.0
    speech, rate = question()
    samples = np.concatenate([speech, np.zeros(int(rate * trailing), dtype="<i2")])
    path = write_wav(tmp_path / "in.wav", samples, rate)
    events = tmp_path / "events.jsonl"
    scenario = fast_scenario(tmp_path, say="Sunny.")
    began = time.monotonic()
    result = run_example(
        "supervisor",
        tmp_path,
        *("--input", str(path), "--scenario", str(scenario), "--events", str(events)),
        *("--quiet", "1"),
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "done: 1 turn(s), 1 tool call(s)" in result.stdout
    assert took >= len(samples) / rate  # not before the input ended
    at = {r["type"]: r["t"] for r in map(json.loads, events.read_text().splitlines())}
    played, ended = at["playout.finished"], at["input.audio_stream_end"]
    assert (played < ended) == (order == "reply ends before the input")
    # and time to first audio counts from the end of speech, not of the stream
    assert "time to first audio:" in result.stdout


def test_text_turns_one_after_another(tmp_path: Path) -> None:
    result = run_example(
        "supervisor",
        tmp_path,
        "--text",
        "What's the weather like in Paris today?",
        "--text",
        "Thanks!",
        *("--quiet", "0.5", "--fast", "--scenario", str(fast_scenario(tmp_path))),
    )
    assert result.returncode == 0, result.stderr
    assert "tool : get_weather" in result.stdout
    assert "done: 2 turn(s), 1 tool call(s)" in result.stdout


def test_tune_gc_tunes_once_the_session_is_up_and_undoes_it_at_the_end(tmp_path: Path) -> None:
    preload = (
        "import atexit, gc, actors\n"
        "tune = actors.tune_gc\n"
        "def noted(*args, **kwargs):\n"
        "    tuning = tune(*args, **kwargs)\n"
        "    print('tuned', gc.get_threshold(), tuning.frozen > 1000, flush=True)\n"
        "    return tuning\n"
        "actors.tune_gc = noted\n"
        "atexit.register(lambda: print('at exit', gc.get_threshold(), gc.get_freeze_count()))\n"
    )
    result = run_example(
        "supervisor",
        tmp_path,
        "--tune-gc",
        *("--text", "What's the weather like in Paris today?"),
        *("--quiet", "0.5", "--fast", "--scenario", str(fast_scenario(tmp_path))),
        preload=preload,
    )
    assert result.returncode == 0, result.stderr
    assert "tuned (50000, 50, 100) True" in result.stdout
    assert "done: 1 turn(s), 1 tool call(s)" in result.stdout
    assert "at exit (700, 10, 10) 0" in result.stdout


def test_events_are_written_line_by_line_as_they_happen(tmp_path: Path) -> None:
    # Issue 14: the events file was written at exit only: a killed run left it empty.
    events = tmp_path / "events.jsonl"
    with subprocess.Popen(
        [sys.executable, str(SCRIPT), "--events", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=NO_KEY,
        cwd=tmp_path,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("tool : ->"):
                break
        process.kill()  # no chance to flush anything at exit
    types = [json.loads(line)["type"] for line in events.read_text().splitlines()]
    assert "function_calls_collected" in types


def test_logs_go_through_logging_with_v(tmp_path: Path) -> None:
    scenario = fast_scenario(tmp_path)
    result = run_example(
        "supervisor", tmp_path, "--fast", "--quiet", "0.5", "--scenario", str(scenario), "-v"
    )
    assert result.returncode == 0, result.stderr
    assert "gemini_live.link: connecting to ws://127.0.0.1:" in result.stderr


def test_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, str(SCRIPT)],  # real-time: 2.7 s of speech
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=NO_KEY,
        cwd=tmp_path,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("(no GOOGLE_API_KEY")  # mid-conversation
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in err


def test_ctrl_c_during_the_imports_is_no_traceback(tmp_path: Path) -> None:
    # Issue 14: a Ctrl+C while the script was still importing printed a traceback.
    interrupt = """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "trio":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
"""
    result = run_example("supervisor", tmp_path, preload=interrupt)
    assert result.returncode == 130
    assert result.stderr == ""


def test_the_custom_pipeline_example_swaps_playout_for_a_meter(tmp_path: Path) -> None:
    result = run_example("custom_pipeline", tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("reply 1: peak ")
    assert -20 < float(line.split()[3]) < 0  # the synthesized reply's peak level, in dBFS


# --- what used to hang ------------------------------------------------------------------


def test_a_wav_of_silence_ends_with_no_reply(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(3 * 16000))
    line = one_line(
        run_example("supervisor", tmp_path, "--input", str(path), "--fast", "--quiet", "1")
    )
    assert line == (
        "error: no reply: the input ended and the server said nothing for 1 s (was anything said?)"
    )


def test_a_wav_with_no_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros(0))
    line = one_line(run_example("supervisor", tmp_path, "--input", str(path)))
    assert line == f"error: {path} holds no audio (0 samples)"


def test_silence_past_the_sessions_audio_limit_ends_naming_the_servers_close(
    tmp_path: Path,
) -> None:
    # Issue 14: an hour of silence with --fast was read whole (300 MB), then reconnected
    # forever; the server's "1000 session length limit" was reported as a 1006.
    path = write_wav(tmp_path / "silence.wav", np.zeros(40 * 16000))
    scenario = tmp_path / "short.json"
    scenario.write_text(json.dumps({"behaviour": {"session_audio_limit_s": 5}}))
    result = run_example(
        "supervisor",
        tmp_path,
        "--input",
        str(path),
        "--fast",
        "--scenario",
        str(scenario),
        "--quiet",
        "1",
    )
    line = one_line(result)
    assert line.startswith("error: ")
    assert "1000 session length limit" in line
    drops = [x for x in result.stdout.splitlines() if "dropped" in x]
    assert len(drops) < 20  # aggregated, not a line per chunk


def test_a_closed_port_names_host_and_cause(tmp_path: Path) -> None:
    port = closed_port()
    began = time.monotonic()
    result = run_example(
        "supervisor", tmp_path, "--endpoint", f"ws://127.0.0.1:{port}", "--connect-timeout", "2"
    )
    line = one_line(result)
    assert line.startswith(f"error: cannot connect to 127.0.0.1:{port}: connection refused (")
    assert time.monotonic() - began < 20


def test_a_key_and_no_network_names_the_host_and_the_dns_failure(tmp_path: Path) -> None:
    no_dns = """
import socket
def getaddrinfo(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
socket.getaddrinfo = getaddrinfo
"""
    result = run_example(
        "supervisor",
        tmp_path,
        "--connect-timeout",
        "2",
        env={**NO_KEY, "GOOGLE_API_KEY": "bogus"},
        preload=no_dns,
    )
    line = one_line(result)
    assert line.startswith(
        "error: cannot connect to generativelanguage.googleapis.com:443: DNS lookup failed "
        "(Temporary failure in name resolution)"
    )
    assert "bogus" not in result.stdout + result.stderr


def test_an_untrusted_certificate_says_so_at_once_and_ca_trusts_it(tmp_path: Path) -> None:
    with emulator_process(tmp_path, "--tls") as ready:
        url, ca = ready[1], ready[2].removeprefix("ca=")
        began = time.monotonic()
        line = one_line(run_example("supervisor", tmp_path, "--endpoint", url))
        assert time.monotonic() - began < 20  # no retrying what cannot change
        host = url.removeprefix("wss://")
        assert line.startswith(
            f"error: cannot connect to {host}: TLS certificate verification failed ("
        )
        trusted = run_example(
            "supervisor", tmp_path, "--endpoint", url, "--ca", ca, "--fast", "--quiet", "0.5"
        )
        assert trusted.returncode == 0, trusted.stderr
        assert "done: 1 turn(s)" in trusted.stdout
        assert "[scripted" not in trusted.stdout  # not known to be the emulator's script
    line = one_line(run_example("supervisor", tmp_path, "--endpoint", url, "--ca", "nope.pem"))
    assert line.startswith("error: cannot use --ca nope.pem: ")


def test_the_environment_key_is_not_sent_to_a_custom_endpoint(tmp_path: Path) -> None:
    with emulator_process(tmp_path, "--api-key", "secret-key") as ready:
        url = ready[1]
        env = {**NO_KEY, "GOOGLE_API_KEY": "secret-key"}
        line = one_line(run_example("supervisor", tmp_path, "--endpoint", url, env=env))
        assert line.startswith("error: the key was refused")
        explicit = run_example(
            "supervisor",
            tmp_path,
            "--endpoint",
            url,
            "--api-key",
            "secret-key",
            "--fast",
            "--quiet",
            "0.5",
        )
        assert explicit.returncode == 0, explicit.stderr


# --- what used to exit 0 ----------------------------------------------------------------


def test_a_reply_cut_off_by_a_1011_is_a_failure(tmp_path: Path) -> None:
    scenario = tmp_path / "cut.json"
    scenario.write_text(
        json.dumps(
            {
                "turns": [{"user": "Hi", "replies": [{"say": "A long answer, cut short. " * 4}]}],
                "faults": [{"spec": "close:code=1011,at=mid-reply"}],
            }
        )
    )
    line = one_line(
        run_example("supervisor", tmp_path, "--scenario", str(scenario), "--fast", "--quiet", "1")
    )
    assert line == (
        "error: the last reply was cut off: the connection was lost mid-reply "
        "(closed with 1011 injected fault) and the question was not asked again"
    )


def test_a_missing_video_folder(tmp_path: Path) -> None:
    line = one_line(run_example("supervisor", tmp_path, "--video", str(tmp_path / "nope")))
    assert line == f"error: {tmp_path / 'nope'} is not a folder"


def test_video_frames_beside_the_audio(tmp_path: Path) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for index, color in enumerate(["red", "blue"]):
        Image.new("RGB", (320, 240), color).save(frames / f"{index}.png")
    scenario = fast_scenario(tmp_path)
    result = run_example(
        "supervisor",
        tmp_path,
        *("--fast", "--quiet", "0.5", "--video", str(frames), "--scenario", str(scenario)),
    )
    assert result.returncode == 0, result.stderr
    assert "done: 1 turn(s)" in result.stdout


# --- what used to be a traceback ----------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:9", "error: endpoint must be a ws:// or wss:// URL, not 'http://"),
        ("notaurl", "error: endpoint must be a ws:// or wss:// URL, not 'notaurl'"),
    ],
)
def test_an_endpoint_that_is_not_a_websocket_url(
    tmp_path: Path, endpoint: str, expected: str
) -> None:
    line = one_line(run_example("supervisor", tmp_path, "--endpoint", endpoint))
    assert line.startswith(expected)


def test_a_malformed_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.json"
    scenario.write_text('{"turns": [ {"user": ')
    line = one_line(run_example("supervisor", tmp_path, "--scenario", str(scenario)))
    assert line.startswith(f"error: invalid scenario {scenario}: ")


def test_an_output_that_is_a_directory(tmp_path: Path) -> None:
    line = one_line(run_example("supervisor", tmp_path, "--output", str(tmp_path)))
    assert line == f"error: cannot write {tmp_path}: Is a directory"


def test_a_missing_input_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    line = one_line(run_example("supervisor", tmp_path, "--input", str(missing), "--fast"))
    assert line == f"error: cannot read {missing}: No such file or directory"


@pytest.mark.parametrize("device", [None, "no such device"])
def test_no_speaker_device_is_a_one_line_error(tmp_path: Path, device: str | None) -> None:
    # Issue 14: an ExceptionGroup. No PortAudio, or no such device (or, with no sound
    # server for this process, no default one): a line either way.
    args = ["--speaker-device", device] if device else []
    result = run_example("supervisor", tmp_path, "--fast", "--speaker", *args)
    if device is None and result.returncode == 0:
        pytest.skip("this machine has a default output device")
    line = one_line(result)
    assert line.startswith(("error: the speaker needs", "error: no speaker device could be opened"))
