"""Agents SDK agents that misbehave, for the tests of ``--agent`` (named by
``tests.support.agents:<name>``): each breaks in one way a real agent can."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent


@function_tool(failure_error_function=None)  # its exception reaches the agent's session
def get_weather(city: str) -> str:
    """Today's weather in a city.

    Args:
        city: The city's name.
    """
    raise RuntimeError("the weather service is down")


#: Its only tool raises, and is declared to let the exception out.
raising_tool_agent = RealtimeAgent(name="Broken weather", instructions="Use get_weather.",
                                   tools=[get_weather])


def raising_factory(call_id: str, session: dict[str, Any]) -> RealtimeAgent[Any]:
    """A factory that cannot make an agent."""
    raise RuntimeError(f"no agent for {call_id}")


def not_an_agent(call_id: str, session: dict[str, Any]) -> str:
    """A factory that returns something else."""
    return "an agent"


async def hanging_factory(call_id: str, session: dict[str, Any]) -> RealtimeAgent[Any]:
    """A factory that never returns."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def session_echo_factory(call_id: str, session: dict[str, Any]) -> RealtimeAgent[Any]:
    """An agent whose instructions name the call and its session's instructions."""
    return RealtimeAgent(name="Echo", instructions=f"{call_id} {session.get('instructions')}")


def _no_forbidden_words(context: Any, agent: Any, output: str) -> Any:
    from agents import GuardrailFunctionOutput

    return GuardrailFunctionOutput(output_info={"checked": len(output)},
                                   tripwire_triggered="forbidden" in output.lower())


def _guarded() -> RealtimeAgent[Any]:
    from agents import OutputGuardrail

    return RealtimeAgent(name="Guarded", instructions="Answer briefly.",
                         output_guardrails=[OutputGuardrail(
                             guardrail_function=_no_forbidden_words, name="no_forbidden")])


#: A working agent whose output guardrail trips on the word "forbidden" in its reply.
guarded_agent = _guarded()
