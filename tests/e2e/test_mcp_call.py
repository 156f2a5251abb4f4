"""An MCP tool through the relay, end to end: a WebRTC client's session names an MCP
server (a real one, the ``mcp`` package's own, on loopback), the embedded upstream lists
and calls it, and every event the data channel carries validates against openai's types."""

from __future__ import annotations

from relay.client import CallClient

from ..support.mcp_server import running_mcp_server
from ..support.realtime import server_event


async def test_mcp_call_through_the_relay_reaches_the_data_channel(
        relay_factory, make_client) -> None:
    async with running_mcp_server() as url:
        relay = await relay_factory(local_mcp_urls=(url,))
        session = {"type": "realtime", "output_modalities": ["text"], "tools": [{
            "type": "mcp", "server_label": "desk", "server_url": f"{url}/mcp",
            "require_approval": "never"}]}
        client: CallClient = make_client(server=relay, session=session)
        await client.connect()
        await client.wait_for("mcp_list_tools.completed", timeout=20)
        client.say("What is the weather in Paris?")
        call = await client.wait_for("response.done", lambda e: e["response"]["output"]
                                     and e["response"]["output"][0]["type"] == "mcp_call")
        assert call["response"]["output"][0]["output"] == "Sunny in example, 21 C"
        answer = await client.wait_for("response.done", lambda e: e["response"]["output"]
                                       and e["response"]["output"][0]["type"] == "message")
        text = answer["response"]["output"][0]["content"][0]["text"]
        assert text == "I used get_weather: Sunny in example, 21 C"
        types = client.types()
        for kind in ("mcp_list_tools.in_progress", "response.mcp_call_arguments.done",
                     "response.mcp_call.in_progress", "response.mcp_call.completed"):
            assert kind in types, kind
        for _, event in client.events:
            server_event(event)
        assert await client.hangup() == 200
