"""The one module that reaches into aiortc/aioice internals: fails loudly when they move."""

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiortc import RTCPeerConnection

from relay.webrtc import internals

if TYPE_CHECKING:
    from aiortc.mediastreams import MediaStreamTrack


async def test_internals_all_present_in_installed_aiortc() -> None:
    # If this fails, an aiortc/aioice upgrade moved what the relay relies on: the message
    # names each attribute (see the table in relay/webrtc/internals.py).
    assert await internals.check() == []


async def test_internals_missing_attribute_raises_naming_it() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    try:
        del transceiver._codecs
        with pytest.raises(internals.AiortcInternalsMoved, match=r"RTCRtpTransceiver\._codecs"):
            internals.negotiated_audio_codecs(pc)
    finally:
        await pc.close()


async def test_internals_missing_jitter_buffer_is_reported_not_raised() -> None:
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("audio").receiver
    try:
        assert internals.has_jitter_buffer(receiver)
        delattr(receiver, internals.JITTER_BUFFER)
        assert not internals.has_jitter_buffer(receiver)
        with pytest.raises(internals.AiortcInternalsMoved, match="jitter_buffer"):
            internals.replace_jitter_buffer(receiver, object())
    finally:
        await pc.close()


async def test_internals_check_names_a_moved_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_INSTANCE_ATTRIBUTES",
                        (*internals._INSTANCE_ATTRIBUTES, ("RTCRtpReceiver", "_no_such_thing")))
    assert await internals.check() == ["RTCRtpReceiver._no_such_thing"]


async def test_internals_check_names_a_packet_attribute_aiortc_stopped_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "RTP_DEPAYLOADED", "_no_such_payload")
    assert await internals.check() == ["RtpPacket._no_such_payload"]


async def test_internals_peer_datagrams_are_heard_through_aioice() -> None:
    # The dead-peer watchdog counts on this: if aioice stops calling the Connection's
    # handlers, a connected peer would seem silent. ICE checks and DTLS must be heard.
    from relay.webrtc.peer import create_peer, restrict_host_addresses

    offerer, answerer = create_peer(()), create_peer(())
    heard: list[int] = []
    try:
        offerer.createDataChannel("probe")
        restrict_host_addresses(offerer, ["127.0.0.1"])
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        internals.watch_peer_datagrams(answerer, lambda: heard.append(1))
        restrict_host_addresses(answerer, ["127.0.0.1"])
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        for _ in range(200):
            if answerer.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        assert answerer.connectionState == "connected"
        assert len(heard) >= 3  # a check at least, and the DTLS handshake's flights
    finally:
        await offerer.close()
        await answerer.close()


async def test_internals_shared_port_routes_by_ufrag_then_only_authenticated_addresses(
        ) -> None:
    import socket

    from aioice import Candidate, Connection, stun

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = internals.SharedPort(sock)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    connections = [Connection(ice_controlling=False) for _ in range(2)]
    heard: list[tuple[int, bytes]] = []
    protocols = []
    for n, connection in enumerate(connections):
        protocol = port.attach(connection)
        protocols.append(protocol)
        protocol.local_candidate = Candidate(foundation="x", component=1, transport="udp",
                                             priority=1, host="127.0.0.1",
                                             port=sock.getsockname()[1], type="host")
        connection.data_received = lambda data, component, n=n: heard.append((n, data))
    target = connections[1]

    def check(password: str) -> bytes:
        request = stun.Message(message_method=stun.Method.BINDING,
                               message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{target.local_username}:peer"
        request.attributes["PRIORITY"] = 1
        request.add_message_integrity(password.encode())
        return bytes(request)

    async def send(data: bytes) -> None:
        await loop.sock_sendto(peer, data, sock.getsockname())
        await asyncio.sleep(0.05)

    try:
        assert len(port) == 2
        await send(b"\x80media before any check")  # unknown address: dropped
        await send(check("not-the-password-at-all-x"))  # the right ufrag, a wrong password
        await send(b"\x80media after a forged check")
        assert heard == [] and port.unroutable == 2
        await send(check(target.local_password))
        await send(b"\x80media after a real check")
        assert heard == [(1, b"\x80media after a real check")]
    finally:
        for protocol in protocols:
            await protocol.close()  # what the connection's close does to its sockets
        assert len(port) == 0
        port.close()
        peer.close()


async def test_internals_inline_rtp_takes_every_packet_and_keeps_aiortc_counting() -> None:
    # A real sending peer; on the answering side the packet tap, the inline path, then
    # the datagram hook, as a call sets them up.
    from aiortc.mediastreams import AudioStreamTrack

    from relay.webrtc.packet_tap import tap_audio
    from relay.webrtc.peer import create_peer, restrict_host_addresses

    offerer, answerer = create_peer(()), create_peer(())
    tapped: list[int] = []
    heard: list[int] = []
    try:
        offerer.addTrack(AudioStreamTrack())
        restrict_host_addresses(offerer, ["127.0.0.1"])
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        restrict_host_addresses(answerer, ["127.0.0.1"])
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert tap_audio(answerer, lambda pt, seq, payload: tapped.append(seq))
        inline = internals.receive_rtp_inline(answerer)
        assert inline is not None
        internals.watch_peer_datagrams(answerer, lambda: heard.append(1))
        await offerer.setRemoteDescription(answerer.localDescription)
        for _ in range(100):
            if len(tapped) >= 25:
                break
            await asyncio.sleep(0.05)
        assert len(tapped) >= 25
        # Inline, in order, each once; nothing had to wait, nothing failed.
        assert inline.packets >= len(tapped) - 2 and inline.packets > 0
        assert all((b - a) % 65536 == 1 for a, b in zip(tapped, tapped[1:], strict=False))
        assert inline.deferred == inline.failures == inline.unprotect_failed == 0
        # The hook still hears the packets, and aiortc still counts them: the transport's
        # datagrams and the receiver's RTP statistics (for its receiver reports).
        assert len(heard) >= inline.packets
        stats = list((await answerer.getStats()).values())
        [transport] = [s for s in stats if s.type == "transport"]
        assert transport.packetsReceived >= inline.packets
        [inbound] = [s for s in stats if s.type == "inbound-rtp"]
        assert inbound.packetsReceived >= inline.packets
    finally:
        await offerer.close()
        await answerer.close()


async def test_internals_inline_rtp_hands_a_waiting_handler_to_a_task() -> None:
    done: list[str] = []

    async def handler() -> None:
        done.append("started")
        await asyncio.sleep(0.01)
        done.append("finished")

    task = internals._run_inline(handler())
    assert task is not None and done == ["started"]
    await task
    assert done == ["started", "finished"]

    async def quick() -> None:
        done.append("quick")

    assert internals._run_inline(quick()) is None and done[-1] == "quick"


async def test_internals_inline_rtp_task_passes_cancellation_to_the_handler() -> None:
    cancelled: list[bool] = []

    async def handler() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = internals._run_inline(handler())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [True]


async def test_internals_check_names_a_dtls_step_the_inline_path_repeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    step = "arrival_time_ms = clock.current_ms()"
    monkeypatch.setattr(internals, "_DTLS_SRTP_STEPS",
                        (*internals._DTLS_SRTP_STEPS, "self.__no_such_step()"))
    assert await internals.check() == ["RTCDtlsTransport._recv_next: self.__no_such_step()"]
    assert step in internals._DTLS_SRTP_STEPS


async def test_internals_inline_rtp_is_not_taken_without_aiortc_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Without what it needs, the inline path changes nothing and the check says why.
    monkeypatch.setattr(internals, "_dtls_connected_state", lambda: None)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        assert internals.receive_rtp_inline(pc) is None
    finally:
        await pc.close()
    assert "aiortc.rtcdtlstransport.State.CONNECTED" in await internals.check()


async def test_internals_inline_send_delivers_aiortcs_packets_unchanged_and_counted() -> None:
    # A real aiortc client peer receives from an answering peer whose transport sends
    # inline: what the client unprotects is, byte for byte, the RTP (and RTCP) aiortc's
    # sender built, in order, and aiortc's counters (for its RTCP sender reports and
    # getStats) count every packet.
    from aiortc.mediastreams import AudioStreamTrack
    from aiortc.rtp import RtpPacket, is_rtcp

    built: list[bytes] = []  # what goes into the fast path
    client, relay, sent, _, arrived = await _sending_pair(AudioStreamTrack(), pace=False,
                                                          built=built)
    try:
        for _ in range(100):
            if len(arrived) >= 25:
                break
            await asyncio.sleep(0.05)
        assert len(arrived) >= 25
        rtp_built = [data for data in built if not is_rtcp(data)]
        rtp_arrived = [data for data in arrived if not is_rtcp(data)]
        assert rtp_arrived == rtp_built[:len(rtp_arrived)]  # loopback: nothing lost
        packets = [RtpPacket.parse(data) for data in rtp_arrived]
        assert len({p.ssrc for p in packets}) == 1
        assert all((b.sequence_number - a.sequence_number) % 65536 == 1
                   for a, b in zip(packets, packets[1:], strict=False))
        assert all((b.timestamp - a.timestamp) % 2**32 == 960
                   for a, b in zip(packets, packets[1:], strict=False))
        assert all(p.marker == 1 for p in packets)
        assert all(data[0] & 0x10 for data in rtp_arrived)  # header extensions kept
        assert sent.packets >= len(rtp_built)
        stats = list((await relay.getStats()).values())
        [outbound] = [s for s in stats if s.type == "outbound-rtp"]
        assert outbound.packetsSent == len(rtp_built)
        [transport] = [s for s in stats if s.type == "transport"]
        # The transport counts the DTLS handshake's flights too.
        assert transport.packetsSent >= sent.packets
    finally:
        await client.close()
        await relay.close()


async def test_internals_inline_send_refuses_not_connected_like_aiortc() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert internals.send_rtp_inline(pc) is not None
        with pytest.raises(ConnectionError):
            await pc.getSenders()[0].transport._send_rtp(b"\x80" + bytes(11))
    finally:
        await pc.close()


async def test_internals_check_names_a_send_step_the_inline_send_repeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_DTLS_SEND_STEPS",
                        (*internals._DTLS_SEND_STEPS, "self.__no_such_step()"))
    assert await internals.check() == ["RTCDtlsTransport._send_rtp: self.__no_such_step()"]
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        assert internals.send_rtp_inline(pc) is None  # and it changes nothing
    finally:
        await pc.close()


async def _sending_pair(track: "MediaStreamTrack", *, pace: bool = True,
                        built: list[bytes] | None = None,
                        ) -> tuple[RTCPeerConnection, RTCPeerConnection, "internals.InlineSend",
                                   "internals.PacedRtp | None", list[bytes]]:
    """A client peer receiving ``track`` from a peer whose transport sends inline (and
    whose sender is paced, with ``pace``); the list fills with the unprotected RTP and
    RTCP the client receives, ``built`` (if given) with what goes into the inline send."""
    from relay.webrtc.peer import create_peer, restrict_host_addresses

    client, relay = create_peer(()), create_peer(())
    arrived: list[bytes] = []
    client.addTransceiver("audio", direction="recvonly")
    restrict_host_addresses(client, ["127.0.0.1"])
    await client.setLocalDescription(await client.createOffer())
    await relay.setRemoteDescription(client.localDescription)
    relay.addTrack(track)
    restrict_host_addresses(relay, ["127.0.0.1"])
    await relay.setLocalDescription(await relay.createAnswer())
    sent = internals.send_rtp_inline(relay)
    assert sent is not None
    [sender] = relay.getSenders()
    if built is not None:
        internals.wrap_rtp_send(sender, built.append)
    paced = internals.pace_rtp(sender, track) if pace else None  # type: ignore[arg-type]
    client_dtls = client.getTransceivers()[0].receiver.transport
    handle = client_dtls._handle_rtp_data

    async def record(data: bytes, arrival_time_ms: int) -> None:
        arrived.append(data)
        await handle(data, arrival_time_ms)

    client_dtls._handle_rtp_data = record  # type: ignore[method-assign]
    await client.setRemoteDescription(relay.localDescription)
    return client, relay, sent, paced, arrived


def _speech_like(index: int) -> bytes:
    """A deterministic 20 ms frame (24 kHz mono PCM16) that changes from frame to frame."""
    import math
    import struct

    from relay.audio import FRAME_SAMPLES

    hz = 200 + 40 * (index % 7)
    return struct.pack(f"<{FRAME_SAMPLES}h", *(
        int(8000 * math.sin(2 * math.pi * hz * (index * FRAME_SAMPLES + n) / 24000))
        for n in range(FRAME_SAMPLES)))


async def test_internals_paced_sender_sends_what_aiortcs_loop_would() -> None:
    # The track's Opus packets, sent from a timer: each arrives with the header aiortc's
    # RtpPacket.serialize makes for the sender (SSRC, payload type, marker, MID and
    # abs-send-time extensions), consecutive sequence numbers, timestamps 960 apart,
    # the encoder's bytes as payload; the sender's counters (RTCP reports, getStats)
    # count every packet, each frame's after-hook runs once, and closing the peer
    # stops the loop and the track as aiortc's loop would.
    from aiortc.rtp import RtpPacket, is_rtcp

    from relay.audio.encode import OpusEncoder
    from relay.webrtc.tracks import PlayoutTrack

    frames = iter(range(10**6))
    after: list[int] = []
    track = PlayoutTrack(lambda: _speech_like(next(frames)), after=lambda: after.append(1))
    track.encode_opus(OpusEncoder())
    client, relay, _, paced, arrived = await _sending_pair(track)
    try:
        assert paced is not None
        for _ in range(100):
            if len(arrived) >= 25:
                break
            await asyncio.sleep(0.05)
        [sender] = relay.getSenders()
        rtp = [data for data in arrived if not is_rtcp(data)]
        assert len(rtp) >= 25 and paced.running
        packets = [RtpPacket.parse(data, sender._RTCRtpSender__rtp_header_extensions_map)
                   for data in rtp]
        reference = OpusEncoder()
        for index, (data, packet) in enumerate(zip(rtp, packets, strict=True)):
            assert packet.payload == reference.encode(_speech_like(index))
            again = RtpPacket(payload_type=packet.payload_type, marker=1,
                              sequence_number=packet.sequence_number,
                              timestamp=packet.timestamp, ssrc=sender._ssrc,
                              payload=packet.payload)
            again.extensions.mid = packet.extensions.mid
            again.extensions.abs_send_time = packet.extensions.abs_send_time
            assert again.serialize(sender._RTCRtpSender__rtp_header_extensions_map) == data
            assert packet.extensions.mid == relay.getTransceivers()[0].mid
            assert packet.extensions.abs_send_time is None  # aiortc offers it for video
        assert all((b.sequence_number - a.sequence_number) % 65536 == 1
                   for a, b in zip(packets, packets[1:], strict=False))
        assert all((b.timestamp - a.timestamp) % 2**32 == 960
                   for a, b in zip(packets, packets[1:], strict=False))
        stats = list((await relay.getStats()).values())
        [outbound] = [s for s in stats if s.type == "outbound-rtp"]
        assert outbound.packetsSent == paced.packets == len(after) >= len(rtp)
        assert outbound.bytesSent >= sum(len(p.payload) for p in packets)
    finally:
        await client.close()
        await asyncio.wait_for(relay.close(), 5)  # the sender's stop() does not hang
    assert track.readyState == "ended"
    assert sender.track is None


async def test_internals_paced_sender_leaves_a_frame_track_to_aiortc() -> None:
    # A track that does not encode Opus itself: aiortc's own loop sends it (it encodes).
    from aiortc.rtp import is_rtcp

    from relay.audio import FRAME_BYTES
    from relay.webrtc.tracks import PlayoutTrack

    track = PlayoutTrack(lambda: bytes(FRAME_BYTES))
    client, relay, _, paced, arrived = await _sending_pair(track)
    try:
        assert paced is not None
        for _ in range(100):
            if len([data for data in arrived if not is_rtcp(data)]) >= 5:
                break
            await asyncio.sleep(0.05)
        assert len([data for data in arrived if not is_rtcp(data)]) >= 5
        assert not paced.running and paced.packets == 0
    finally:
        await client.close()
        await asyncio.wait_for(relay.close(), 5)


async def test_internals_paced_header_stamps_abs_send_time_where_negotiated() -> None:
    # aiortc negotiates abs-send-time for video only, but a sender configured with it
    # gets the header aiortc would serialize, with the time patched in.
    from aiortc import clock
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("audio").sender
        extensions = sender._RTCRtpSender__rtp_header_extensions_map
        extensions.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=3, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=5, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
        sender._RTCRtpSender__mid = "0"
        header, at = internals._rtp_header(sender, 111)
        assert at is not None
        ntp = clock.current_ntp_time()
        header[2:8] = bytes.fromhex("1234deadbeef")
        header[at:at + 3] = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        packet = RtpPacket(payload_type=111, marker=1, sequence_number=0x1234,
                           timestamp=0xDEADBEEF, ssrc=sender._ssrc, payload=b"opus")
        packet.extensions.mid = "0"
        packet.extensions.abs_send_time = (ntp >> 14) & 0xFFFFFF
        assert bytes(header) + b"opus" == packet.serialize(extensions)
    finally:
        await pc.close()


def test_internals_ntp_clock_matches_aiortcs() -> None:
    from aiortc import clock

    # Within 10 ms (the two reads are not simultaneous), in 32.32 fixed point.
    assert abs(internals._ntp_now() - clock.current_ntp_time()) < 2**32 // 100


async def test_internals_check_names_a_step_the_paced_sender_repeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_SENDER_RTP_STEPS",
                        (*internals._SENDER_RTP_STEPS, "self.__no_such_step()"))
    assert await internals.check() == ["RTCRtpSender._run_rtp: self.__no_such_step()"]
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("audio").sender
        assert internals.pace_rtp(sender, object()) is None  # type: ignore[arg-type]
        assert "_run_rtp" not in vars(sender)  # and it changes nothing
    finally:
        await pc.close()
