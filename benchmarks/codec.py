"""Codec micro-benchmark: our wire codec against google-genai's own live path.

Receive: one serverContent frame carrying 40 ms of 24 kHz audio. Ours is
``decode_server`` (and, separately, ``decode_server`` plus the session state machine);
the SDK's is what ``AsyncSession._receive`` does per message: ``json.loads``, its
``_LiveServerMessage_from_mldev`` converter and ``LiveServerMessage._from_response``
validation. Send: one realtimeInput carrying 20 ms of 16 kHz audio, built and serialised.
Ours is ``encode(RealtimeInput(audio=Blob(...)))``; the SDK's is what
``send_realtime_input`` does before the socket: build, validate, convert, ``json.dumps``.

Both sides run in interleaved rounds in one process, so machine noise hits them alike.
Reported: the median time per message over rounds, p10-p90 spread, and the ratio.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from google.genai import _common, _live_converters, types

from protocol import decode_server, encode
from protocol import websocket as rfc6455
from protocol import wire as w
from protocol.session import LiveSession

AUDIO_40MS_24K = bytes(range(256)) * 7 + bytes(128)  # 1920 bytes: 960 samples
AUDIO_20MS_16K = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 320 samples
RECEIVE_FRAME = json.dumps(
    {
        "serverContent": {
            "modelTurn": {
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": "audio/pcm;rate=24000",
                            "data": base64.b64encode(AUDIO_40MS_24K).decode(),
                        }
                    }
                ]
            }
        }
    }
).encode()
MIME_16K = "audio/pcm;rate=16000"


def ours_receive() -> Any:
    return decode_server(RECEIVE_FRAME)


def _session_in_turn() -> LiveSession:
    session = LiveSession()
    session.send(w.Setup(model="models/m"))
    session.receive_frame(b'{"setupComplete":{}}')
    return session


_SESSION = _session_in_turn()


def ours_receive_with_session() -> Any:
    return _SESSION.receive_frame(RECEIVE_FRAME)


def sdk_receive() -> Any:
    # google/genai/live.py AsyncSession._receive, after ws.recv():
    parameter_model = types.LiveServerMessage()
    response = json.loads(RECEIVE_FRAME)
    response_dict = _live_converters._LiveServerMessage_from_mldev(response)
    return types.LiveServerMessage._from_response(
        response=response_dict, kwargs=parameter_model.model_dump()
    )


def ours_send() -> bytes:
    return encode(w.RealtimeInput(audio=w.Blob(mime_type=MIME_16K, data=AUDIO_20MS_16K)))


def sdk_send() -> str:
    # google/genai/live.py AsyncSession.send_realtime_input, before ws.send():
    kwargs = {"audio": types.Blob(data=AUDIO_20MS_16K, mime_type=MIME_16K)}
    realtime_input = types.LiveSendRealtimeInputParameters.model_validate(kwargs)
    realtime_input_dict = _live_converters._LiveSendRealtimeInputParameters_to_mldev(
        from_object=realtime_input
    )
    realtime_input_dict = _common.convert_to_dict(realtime_input_dict)
    realtime_input_dict = _common.encode_unserializable_types(realtime_input_dict)
    return json.dumps({"realtime_input": realtime_input_dict})


def _time_per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000.0  # microseconds


def compare(
    ours: Callable[[], object],
    sdk: Callable[[], object],
    *,
    rounds: int,
    ours_calls: int,
    sdk_calls: int,
) -> dict[str, Any]:
    ours()
    sdk()  # warm caches (the SDK builds pydantic validators lazily)
    ours_times: list[float] = []
    sdk_times: list[float] = []
    for _ in range(rounds):
        ours_times.append(_time_per_call(ours, ours_calls))
        sdk_times.append(_time_per_call(sdk, sdk_calls))

    def summary(times: list[float]) -> dict[str, float]:
        deciles = statistics.quantiles(times, n=10)
        return {
            "median_us": round(statistics.median(times), 3),
            "p10_us": round(deciles[0], 3),
            "p90_us": round(deciles[-1], 3),
        }

    ours_summary, sdk_summary = summary(ours_times), summary(sdk_times)
    ratios = sorted(s / o for o, s in zip(ours_times, sdk_times, strict=True))
    return {
        "ours": ours_summary,
        "google_genai": sdk_summary,
        "speedup_median": round(sdk_summary["median_us"] / ours_summary["median_us"], 1),
        "speedup_min_round": round(ratios[0], 1),
        "rounds": rounds,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds = 5 if quick else 21
    results = {
        "receive_server_content_40ms_24k": compare(
            ours_receive, sdk_receive, rounds=rounds, ours_calls=4000, sdk_calls=400
        ),
        "receive_with_session_state_machine": compare(
            ours_receive_with_session, sdk_receive, rounds=rounds, ours_calls=4000, sdk_calls=400
        ),
        "send_realtime_input_20ms_16k": compare(
            ours_send, sdk_send, rounds=rounds, ours_calls=4000, sdk_calls=400
        ),
    }
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"{'codec path':40} {'ours µs':>16} {'google-genai µs':>18} {'speedup':>8}")
    for name, row in results.items():
        ours, sdk = row["ours"], row["google_genai"]
        print(
            f"{name:40} {ours['median_us']:7.2f} ({ours['p10_us']:.2f}-{ours['p90_us']:.2f})"
            f" {sdk['median_us']:8.2f} ({sdk['p10_us']:.1f}-{sdk['p90_us']:.1f})"
            f" {row['speedup_median']:7.1f}x"
        )


# --- the protocol layer, call by call ------------------------------------------------------
# What one message costs in each sans-IO call it goes through, ours only: an audio frame up
# (session.send, then WebSocket framing and masking) and a server audio message down (the
# WebSocket parser, decode_server, the session). ``python -m benchmarks.codec`` prints it.
# Timed on the thread's CPU clock in interleaved rounds (a shared machine's noise hits every
# call alike); the minimum is the steadier figure, the median the likelier one under load.

SERVER_FRAME = rfc6455.encode_frame(rfc6455.OP_BINARY, RECEIVE_FRAME)  # as the server writes it


def protocol_calls() -> dict[str, Callable[[], object]]:
    """The calls, each on its own session or connection, all in steady state."""
    send_session, receive_session = _session_in_turn(), _session_in_turn()
    client = rfc6455.WebSocket(rfc6455.Role.CLIENT)
    audio = w.RealtimeInput(audio=w.Blob(mime_type=MIME_16K, data=AUDIO_20MS_16K))
    up_frame = send_session.send(audio)
    down = decode_server(RECEIVE_FRAME)
    receive_session.receive(down)  # the turn is open: each call is one more chunk of it

    def up_total() -> bytes:
        message = w.RealtimeInput(audio=w.Blob(mime_type=MIME_16K, data=AUDIO_20MS_16K))
        return client.send_message(send_session.send(message))

    def down_total() -> object:
        (event,) = client.receive_data(SERVER_FRAME)
        assert type(event) is rfc6455.Message
        return receive_session.receive(decode_server(event.data))

    return {
        "up: LiveSession.send (encode included)": lambda: send_session.send(audio),
        "up: wire.encode": lambda: encode(audio),
        "up: WebSocket.send_message (masked)": lambda: client.send_message(up_frame),
        "up: all, the message built too": up_total,
        "down: WebSocket.receive_data": lambda: client.receive_data(SERVER_FRAME),
        "down: decode_server": lambda: decode_server(RECEIVE_FRAME),
        "down: LiveSession.receive": lambda: receive_session.receive(down),
        "down: all": down_total,
    }


def time_protocol_calls(*, rounds: int = 60, calls: int = 2000) -> dict[str, dict[str, float]]:
    """Microseconds of CPU per call: median and minimum over ``rounds``."""
    named = protocol_calls()
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, call in named.items():
            start = time.thread_time_ns()
            for _ in range(calls):
                call()
            times[name].append((time.thread_time_ns() - start) / calls / 1000.0)
    return {
        name: {"median_us": round(statistics.median(t), 3), "min_us": round(min(t), 3)}
        for name, t in times.items()
    }


if __name__ == "__main__":
    for call_name, row in time_protocol_calls().items():
        print(f"{call_name:42} median {row['median_us']:7.3f} µs  min {row['min_us']:7.3f} µs")
