"""A voice agent with one function tool, served by the relay on every call:

    scripts/serve --agent examples.weather_agent:agent

then, on the demo page (http://127.0.0.1:8080/), type "what does get_weather say for
Paris?". The relay runs this agent in its own process, attached to the call's session:
the model calls ``get_weather``, the relay runs it here, and the answer is spoken on the
call. With no API key the embedded local server plays the model: it calls a tool whose
name you type, with placeholder arguments (``"example"`` for a string), and its spoken
answer says what the tool returned. With ``OPENAI_API_KEY`` set, a real model does.
"""

from __future__ import annotations

from agents import function_tool
from agents.realtime import RealtimeAgent

#: A tiny stand-in for a weather service.
FORECASTS = {"paris": "sunny, 21 C", "london": "light rain, 14 C", "tokyo": "cloudy, 18 C"}


@function_tool
def get_weather(city: str) -> str:
    """Today's weather in a city.

    Args:
        city: The city's name, e.g. Paris.
    """
    forecast = FORECASTS.get(city.strip().lower(), "mild and dry, 17 C")
    return f"The weather in {city} is {forecast}."


agent = RealtimeAgent(
    name="Weather assistant",
    instructions="You answer questions about the weather. Use get_weather for any city the "
                 "user names, and say what it returned in one short sentence.",
    tools=[get_weather],
)
