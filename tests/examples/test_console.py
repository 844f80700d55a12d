"""`make console` for real: microphone in, speaker out, through a virtual sound card.

A private PulseAudio server (Debian's ``pulseaudio``, started by the test in a temporary
runtime directory) with two null sinks: ``mic_feed``, whose monitor is the default source
(the "microphone": whatever ``paplay`` plays into it is heard), and ``speaker``, the
default sink, whose monitor ``parec`` records (what the console played). PortAudio
reaches it through ALSA's pulse plugin (``libportaudio2``, ``libasound2-plugins``).
Skipped, saying why, only where that virtual card cannot start."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "supervisor.py"
QUESTION = ROOT / "examples" / "assets" / "question.wav"


def _start_pulse(runtime: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A private PulseAudio server in ``runtime``; its process and the environment its
    clients need. Raises RuntimeError saying why it could not start."""
    missing = [
        tool for tool in ("pulseaudio", "pactl", "paplay", "parec") if not shutil.which(tool)
    ]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not installed (apt-get install pulseaudio)")
    runtime.mkdir(mode=0o700)
    (runtime / "home").mkdir()
    log = runtime / "pulseaudio.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "XDG_RUNTIME_DIR": str(runtime),
        "HOME": str(runtime / "home"),
        "PULSE_SERVER": f"unix:{runtime / 'pulse' / 'native'}",
    }
    with log.open("wb") as errors:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",  # no default.pa: only what is loaded here
                "--load=module-native-protocol-unix",
                "--load=module-null-sink sink_name=speaker",
                "--load=module-null-sink sink_name=mic_feed",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            server.wait()
            logged = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("E:")]
            raise RuntimeError(f"pulseaudio did not start: {(logged or ['no error logged'])[-1]}")
        time.sleep(0.1)
    for command in (["set-default-sink", "speaker"], ["set-default-source", "mic_feed.monitor"]):
        subprocess.run(["pactl", *command], env=env, check=True, capture_output=True)
    return server, env


@pytest.fixture
def sound_card(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a process that talks to the virtual sound card."""
    try:
        server, env = _start_pulse(tmp_path / "pulse")
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no virtual sound card: {exc}")
    try:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sounddevice as sd; sd.check_output_settings(); sd.check_input_settings()",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"PortAudio cannot reach the virtual sound card: {last}")
        yield env
    finally:
        while SPEAKING:
            SPEAKING.pop().wait(timeout=30)
        server.terminate()
        server.wait(timeout=10)


class Lines:
    """A process's stdout, line by line, waited for with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def read() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=read, daemon=True).start()

    def until(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line in {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the console ended before a {prefix!r} line: {self.seen}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line


SPEAKING: list[subprocess.Popen[bytes]] = []


def speak(env: dict[str, str], wav: Path = QUESTION) -> None:
    """Play ``wav`` into the microphone (in the background; ``SPEAKING`` until it ends)."""
    SPEAKING.append(subprocess.Popen(["paplay", "--device=mic_feed", str(wav)], env=env))


def test_a_live_conversation_by_voice_with_a_barge_in_and_a_typed_line(
    sound_card: dict[str, str], tmp_path: Path
) -> None:
    heard = tmp_path / "heard.raw"
    with (
        heard.open("wb") as recording,
        subprocess.Popen(
            ["parec", "--device=speaker.monitor", "--format=s16le", "--rate=24000", "--channels=1"],
            env=sound_card,
            stdout=recording,
        ) as recorder,
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--console", "--quiet", "1"],
            env=sound_card,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as console,
    ):
        try:
            lines = Lines(console)
            lines.until("(speak")
            speak(sound_card)  # the microphone hears the question
            assert "[scripted" in lines.until("you  :")
            lines.until("tool : ->")
            lines.until("time to first audio:")  # the reply is playing now
            time.sleep(0.5)
            speak(sound_card)  # the user speaks over it
            interrupted = lines.until("agent:")
            assert interrupted.endswith("[interrupted]"), lines.seen
            lines.until("agent:")  # the answer to what was said over it
            assert console.stdin is not None
            console.stdin.write("And in London?\n")  # a typed line is a text turn
            console.stdin.flush()
            lines.until("agent:")
        finally:
            console.send_signal(signal.SIGINT)
            _, err = console.communicate(timeout=30)
            recorder.terminate()
    assert console.returncode == 130
    assert "Traceback" not in err
    played = np.frombuffer(heard.read_bytes(), dtype="<i2")
    assert len(played) > 24000
    assert np.abs(played).max() > 1000  # the speaker played the replies


def test_a_missing_microphone_is_one_line(sound_card: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--console", "--mic-device", "no such microphone"],
        env=sound_card,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no microphone device could be opened: No input device matching 'no such microphone'"
    ]


def test_without_portaudio_the_console_says_so_in_one_line(tmp_path: Path) -> None:
    # A machine without the system's PortAudio: sounddevice cannot load it.
    no_portaudio = (
        "import ctypes.util; real = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: None if 'portaudio' in name else real(name)\n"
        "import runpy, sys\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--console']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", no_portaudio],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the microphone needs PortAudio: install the system's")
