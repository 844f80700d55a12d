"""What ``make web`` offers without a key: a weather tool and the emulator's script."""

from __future__ import annotations

from typing import Any

from actors.tools import tool
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn

WEATHER = {"paris": (21.0, "sunny"), "london": (14.0, "drizzle"), "tokyo": (18.0, "cloudy")}


@tool(timeout=5)
def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: The city name, e.g. "Paris".
    """
    temperature, sky = WEATHER.get(city.strip().lower(), (15.0, "unknown"))
    return {"city": city, "temperature_c": temperature, "sky": sky}


# The emulator does not understand speech: it answers each turn the user takes (spoken or
# typed) with the next scripted reply, whatever was said.
DEMO = Scenario(
    turns=(
        Turn(
            user="What's the weather like in Paris today?",
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
                Reply(
                    say="It is twenty-one degrees and sunny in Paris today. "
                    "A lovely day for a walk along the river."
                ),
            ),
        ),
        Turn(
            user="Tell me about yourself.",
            replies=(
                Reply(
                    say="I am the local Gemini Live emulator. I follow a script, so I do not "
                    "understand what you say, but everything between your browser and me is "
                    "the real thing: your microphone, the actors, the wire protocol. Try "
                    "talking over me: I stop."
                ),
            ),
        ),
    ),
    default_reply=Reply(
        say="That is the end of my script. Set GOOGLE_API_KEY to talk to Gemini itself."
    ),
    behaviour=Behaviour(pace="realtime"),
)
