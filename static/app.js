/**
 * The relay's demo page: one voice call with the assistant, over WebRTC.
 *
 * The page does what any client of the Realtime WebRTC API does: it captures the
 * microphone, creates an RTCPeerConnection with the mic track and an "oai-events" data
 * channel, POSTs its SDP offer to /v1/realtime/calls and applies the answer. The
 * assistant's voice arrives as a remote audio track; everything else arrives as JSON
 * events on the data channel.
 *
 * With "GPT-Live" chosen, the same page holds a GPT-Live session instead: it POSTs
 * `{session, transport: {type: "webrtc", sdp}}` as JSON to /v1/live/sessions, reads the
 * session id from the JSON answer, and shows the session's input and output transcript
 * deltas (docs/LIVE_PROTOCOL.md). GPT-Live has no cancel command and no typed user
 * messages: the model handles interruptions itself.
 *
 * While the call lasts, the statistics panel charts what getStats() says of the network
 * and the audio, and lists each turn's latency (see callstats.js).
 *
 * The call survives a change of network: when no audio has come from the relay for 1.5 s,
 * the connection goes "disconnected" or "failed", or the browser says it is back online
 * or its connection changed, the page
 * builds a new RTCPeerConnection (same microphone, new "oai-events" channel) and resumes
 * the call with the resume token the relay gave with it (POST .../{id}/resume with
 * X-Relay-Resume-Token); the relay's "relay.call.resumed" event (a GPT-Live session's:
 * an "info" with code "call_resumed") then says how long it was gone. The relay cannot restart ICE on an existing peer connection (aiortc cannot), so the
 * page does not call pc.restartIce(). `relayDemo.resumes` counts the resumes, and
 * `relayDemo.resume()` forces one.
 *
 * For tests (and the curious, from the console) the page exposes `window.relayDemo`:
 * `events` (the events received on the channel), `state`, `callId`, the meters'
 * levels (`maxRemoteLevel` is the loudest assistant audio heard, 0..1), and `start()`,
 * `hangup()`, `send(event)`, `interrupt()`.
 */

import { CallStats, TurnTimer } from "/static/callstats.js";

const CALLS_URL = "/v1/realtime/calls";
const LIVE_URL = "/v1/live/sessions";
const LIVE_MODEL = "gpt-live-1";
/** A GPT-Live reply counts as playing until this long after its last transcript delta. */
const LIVE_QUIET_MS = 1200;
/** How long to wait for ICE gathering before posting the offer anyway. */
const ICE_GATHERING_TIMEOUT_MS = 2000;
/** Lines kept in the on-page event log. */
const LOG_LINES = 300;
/** Events kept in `relayDemo.events`; the oldest go first (a long call sends many). */
const MAX_EVENTS = 5000;
/** How often the level meters sample their analysers. A timer, not requestAnimationFrame,
 * so the levels keep being measured when the tab is hidden. */
const METER_INTERVAL_MS = 50;
/** Log summaries are cut to this many characters. */
const SUMMARY_CHARS = 140;
/** The header the relay gives a call's resume token in, and takes it back in. */
const RESUME_TOKEN_HEADER = "X-Relay-Resume-Token";
/** How long a "disconnected" connection may stay so before the page resumes the call. */
const RESUME_AFTER_MS = 1500;
/** How often the page looks whether the relay's audio still arrives. */
const INBOUND_POLL_MS = 250;
/** The longest the page keeps trying to resume before it gives the call up. */
const RESUME_GIVE_UP_MS = 30000;

const $ = (id) => document.getElementById(id);
const ui = {
  state: $("state"),
  callId: $("call-id"),
  recording: $("recording"),
  start: $("start"),
  hangup: $("hangup"),
  interrupt: $("interrupt"),
  micMeter: $("mic-meter"),
  micFill: $("mic-fill"),
  speaking: $("speaking"),
  speakingText: $("speaking-text"),
  error: $("error"),
  apiKey: $("api-key"),
  instructions: $("instructions"),
  captionsOnly: $("captions-only"),
  audio: $("remote-audio"),
  transcript: $("transcript"),
  messageForm: $("message-form"),
  message: $("message"),
  send: $("send"),
  log: $("log"),
  logCount: $("log-count"),
  protocol: $("protocol"),
};

/** The call statistics charts and the turn latencies; kept after a call ends, for a look. */
const callStats = new CallStats($("stats"));
const turns = new TurnTimer($("turns"));

/**
 * The current call, or null. Each start() makes a new one, so handlers of a call that
 * has ended can tell (`call !== session`) and do nothing.
 * @type {null | {pc: RTCPeerConnection|null, channel: RTCDataChannel|null,
 *   mic: MediaStream|null, audio: AudioContext|null, id: string|null, meterTimer: number|null,
 *   analysers: {mic?: AnalyserNode, remote?: AnalyserNode}, closed: boolean,
 *   captionsOnly: boolean, resumeToken: string|null, resuming: boolean,
 *   resumeTimer: number|null}}
 */
let call = null;

/** Transcript entries by conversation item id, so deltas land in the right line. */
const transcriptItems = new Map();
/** The assistant item being spoken, marked when the user interrupts it. */
let speakingItemId = null;
/** The response being generated (between response.created and response.done), or null. */
let activeResponseId = null;
/** GPT-Live's transcript deltas carry no item ids: each run of one role's deltas is a turn. */
let liveTurn = { role: null, id: null, count: 0 };
/** Turns the speaking indicator off once a GPT-Live reply has gone quiet. */
let liveQuietTimer = null;
/** Errors that need no alert: a cancel that raced the end of its response is harmless. */
const QUIET_ERRORS = new Set(["response_cancel_not_active"]);

const demo = {
  events: [],
  state: "idle",
  callId: null,
  micLevel: 0,
  maxMicLevel: 0,
  remoteLevel: 0,
  maxRemoteLevel: 0,
  start,
  hangup,
  send,
  interrupt,
  resume: () => (call ? resume(call, "asked") : Promise.resolve(false)),
  resumes: 0,
};
window.relayDemo = demo;

// ------------------------------------------------------------------ the call

/** Start a call: microphone, peer connection, offer → relay → answer. */
async function start() {
  if (call) return;
  clearError();
  resetCallView();
  const session = {
    pc: null, channel: null, mic: null, audio: null, id: null, meterTimer: null,
    analysers: {}, closed: false, protocol: chosenProtocol(),
    captionsOnly: ui.captionsOnly.checked && chosenProtocol() !== "live",
    resumeToken: null, resuming: false, resumeTimer: null,
  };
  call = session;
  setState("starting");
  updateControls();
  try {
    // Made while handling the click, so the browser lets it play.
    session.audio = new AudioContext();
    session.audio.resume().catch(() => {});
    session.mic = await getMicrophone();
    if (session.closed) {
      // Hung up while the browser was asking for the microphone.
      session.mic.getTracks().forEach((track) => track.stop());
      return;
    }
    session.analysers.mic = analyse(session.audio, session.mic);
    session.meterTimer = setInterval(() => updateMeters(session), METER_INTERVAL_MS);

    const pc = newPeer(session);
    await pc.setLocalDescription(await pc.createOffer());
    // The relay does not trickle: give the offer its candidates if they come quickly.
    await iceGatheringDone(pc, ICE_GATHERING_TIMEOUT_MS);
    if (session.closed) return;
    logNote(`posting the offer (ICE gathering ${pc.iceGatheringState})`);
    const { answer, callId, resumeToken } = session.protocol === "live"
      ? await postLiveOffer(pc.localDescription.sdp)
      : await postOffer(pc.localDescription.sdp, session.captionsOnly);
    // Only a relay gives one; without it the page cannot resume the call.
    session.resumeToken = resumeToken || null;
    if (session.closed) {
      // Hung up while the relay was answering: end the call it just made.
      if (callId) postHangup(callId, {}, session.protocol).catch(() => {});
      return;
    }
    session.id = callId;
    demo.callId = callId;
    ui.callId.textContent = callId || "unknown";
    logNote(`${session.protocol === "live" ? "GPT-Live session" : "call"} ${callId} created`);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (error) {
    if (session.closed) return;
    const message = error.message || String(error);
    logLine("note", "·", `failed: ${message}`, "error");
    showError(message);
    await teardown(session, "failed");
  }
}

/** A peer connection for the call: the microphone's track and the "oai-events" channel. */
function newPeer(session) {
  const pc = new RTCPeerConnection();
  session.pc = pc;
  watchPeer(session, pc);
  callStats.start(pc);
  for (const track of session.mic.getAudioTracks()) pc.addTrack(track, session.mic);
  session.channel = pc.createDataChannel("oai-events");
  watchChannel(session, session.channel);
  pc.ontrack = (event) => playRemote(session, event.streams[0] || new MediaStream([event.track]));
  return pc;
}

/**
 * Carry the call on a new peer connection (the network changed): offer it to the relay
 * with the call's resume token, and close the old one. Retries until RESUME_GIVE_UP_MS
 * have passed; resolves to whether it worked.
 */
async function resume(session, why) {
  if (session.closed || session.resuming || !session.id || !session.resumeToken) return false;
  session.resuming = true;
  clearTimeout(session.resumeTimer);
  const began = performance.now();
  logNote(`resuming the call (${why})`);
  setState("resuming");
  try {
    while (!session.closed && performance.now() - began < RESUME_GIVE_UP_MS) {
      const old = session.pc;
      const oldChannel = session.channel;
      const pc = newPeer(session);
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await iceGatheringDone(pc, ICE_GATHERING_TIMEOUT_MS);
        const response = await postResume(session, pc.localDescription.sdp);
        if (response.status === 404 || response.status === 403) {
          showError(await errorMessage(response));
          await teardown(session, "closed");
          return false;
        }
        if (!response.ok) throw new Error(await errorMessage(response));
        const answer = session.protocol === "live"
          ? (await response.json()).transport.sdp
          : await response.text();
        await pc.setRemoteDescription({ type: "answer", sdp: answer });
        if (old && old !== pc) old.close();
        demo.resumes += 1;
        logNote(`resumed in ${Math.round(performance.now() - began)} ms`);
        return true;
      } catch (error) {
        // No network yet: try again in a moment, on whatever network the browser has then.
        pc.close();
        session.pc = old;
        session.channel = oldChannel;
        logNote(`resume failed: ${error.message || error}; trying again`);
        await new Promise((done) => setTimeout(done, 1000));
      }
    }
    if (!session.closed) {
      showError("The call could not be resumed on this network.");
      await teardown(session, "failed");
    }
    return false;
  } finally {
    session.resuming = false;
  }
}

/** Hang up: tell the relay, then close everything. Resolves to the hangup's HTTP status. */
async function hangup() {
  const session = call;
  if (!session) return null;
  session.closed = true;  // from now on, the call's own handlers stay quiet
  let status = null;
  if (session.id) {
    try {
      const response = await postHangup(session.id, {}, session.protocol);
      status = response.status;
      // 404: the relay had already ended the call; nothing to tell the user.
      if (!response.ok && response.status !== 404) showError(await errorMessage(response));
    } catch (error) {
      showError(`Hang up failed: ${error.message}`);
    }
  }
  logNote("hung up");
  await teardown(session, "closed");
  return status;
}

/** Send one client event on the data channel; false if the channel is not open. */
function send(event) {
  const channel = call && call.channel;
  if (!channel || channel.readyState !== "open") return false;
  channel.send(JSON.stringify(event));
  logLine("out", event.type, summarize(event));
  return true;
}

/**
 * Cut the assistant off: cancel the response still being generated, if any, and drop
 * the audio not yet played (the relay then tells the model how much was heard).
 */
function interrupt() {
  if (activeResponseId) send({ type: "response.cancel" });
  send({ type: "output_audio_buffer.clear" });
}

/** Send a typed message as a user item and ask for a response to it. */
function sendText(text) {
  const item = {
    type: "message",
    role: "user",
    content: [{ type: "input_text", text }],
  };
  if (send({ type: "conversation.item.create", item })) send({ type: "response.create" });
}

/** Release everything the call holds. Safe to call twice. */
async function teardown(session, state) {
  session.closed = true;
  clearInterval(session.meterTimer);
  clearTimeout(session.resumeTimer);
  if (call === session) callStats.stop();
  if (session.channel) session.channel.close();
  if (session.pc) session.pc.close();
  if (session.mic) session.mic.getTracks().forEach((track) => track.stop());
  if (session.audio && session.audio.state !== "closed") {
    await session.audio.close().catch(() => {});
  }
  if (call !== session) return;
  call = null;
  ui.audio.srcObject = null;
  setSpeaking(false);
  setMeter(0);
  setState(state);
  updateControls();
}

// -------------------------------------------------------------------- set-up

async function getMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This page cannot use the microphone here: browsers allow it only on " +
      "https:// pages and on http://localhost.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    if (error.name === "NotAllowedError") throw new Error("Microphone access was denied.");
    if (error.name === "NotFoundError") throw new Error("No microphone was found.");
    throw new Error(`Could not open the microphone: ${error.message}`);
  }
}

/** Resolve when ICE gathering completes, or after `timeoutMs`, whichever comes first. */
function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, timeoutMs);
    function check() {
      if (pc.iceGatheringState === "complete") finish();
    }
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * The session of a "Captions only" call: a transcription session, which transcribes
 * each turn of the user's speech and never answers.
 */
const CAPTIONS_SESSION = {
  type: "transcription",
  audio: { input: { transcription: { model: "gpt-4o-transcribe" } } },
};

/**
 * POST the offer (raw, or with a transcription session as a multipart form for
 * "Captions only"); return the answer and the call id (the Location's last segment).
 */
async function postOffer(sdp, captionsOnly) {
  let body = sdp;
  const headers = { ...authHeaders() };
  if (captionsOnly) {
    body = new FormData();
    body.append("sdp", sdp);
    body.append("session", JSON.stringify(CAPTIONS_SESSION));
  } else {
    headers["Content-Type"] = "application/sdp";
  }
  let response;
  try {
    response = await fetch(CALLS_URL, { method: "POST", headers, body });
  } catch (error) {
    throw new Error(`Could not reach the relay: ${error.message}`);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  const location = response.headers.get("Location");
  const callId = location
    ? new URL(location, window.location.href).pathname.split("/").filter(Boolean).pop()
    : null;
  // A relay's own: other servers of the API give none (then the page cannot resume).
  const resumeToken = response.headers.get(RESUME_TOKEN_HEADER);
  return { answer: await response.text(), callId, resumeToken };
}

/** POST a resume of the call on a new peer connection: the offer in the call's API's
 * shape (SDP for a Realtime call, the creation's JSON for a GPT-Live session). */
function postResume(session, sdp) {
  const live = session.protocol === "live";
  return fetch(`${live ? LIVE_URL : CALLS_URL}/${encodeURIComponent(session.id)}/resume`, {
    method: "POST",
    headers: { "Content-Type": live ? "application/json" : "application/sdp",
      [RESUME_TOKEN_HEADER]: session.resumeToken },
    body: live ? JSON.stringify({ transport: { type: "webrtc", sdp } }) : sdp,
  });
}

/** POST a GPT-Live session (JSON in, JSON out); return the answer, the session id and
 * its resume token. */
async function postLiveOffer(sdp) {
  const session = { model: LIVE_MODEL };
  const instructions = ui.instructions.value.trim();
  if (instructions) session.instructions = instructions;
  let response;
  try {
    response = await fetch(LIVE_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ session, transport: { type: "webrtc", sdp } }),
    });
  } catch (error) {
    throw new Error(`Could not reach the relay: ${error.message}`);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  const created = await response.json();
  return { answer: created.transport.sdp, callId: created.session.id,
    resumeToken: created.resume_token || response.headers.get(RESUME_TOKEN_HEADER) };
}

/** The voice API chosen on the page: "realtime" or "live". */
function chosenProtocol() {
  const checked = ui.protocol.querySelector("input[name=protocol]:checked");
  return checked ? checked.value : "realtime";
}

function postHangup(callId, options = {}, protocol = "realtime") {
  const base = protocol === "live" ? LIVE_URL : CALLS_URL;
  return fetch(`${base}/${encodeURIComponent(callId)}/hangup`, {
    method: "POST",
    headers: authHeaders(),
    ...options,
  });
}

function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The message of an API error body ({"error": {"message", "code", ...}}), or the status. */
async function errorMessage(response) {
  const text = await response.text().catch(() => "");
  try {
    const { error } = JSON.parse(text);
    if (error && error.message) {
      const code = error.code ? `, ${error.code}` : "";
      return `${error.message} (HTTP ${response.status}${code})`;
    }
  } catch {
    // not JSON: fall through
  }
  const detail = text ? `: ${text.slice(0, 200)}` : "";
  return `The relay answered HTTP ${response.status} ${response.statusText}${detail}`;
}

function watchPeer(session, pc) {
  pc.onconnectionstatechange = () => {
    if (call !== session || session.closed || session.pc !== pc) return;
    const state = pc.connectionState;
    if (state !== "new") setState(state);
    logNote(`connection ${state}`);
    if (state === "connected") {
      clearTimeout(session.resumeTimer);
      watchInbound(session, pc);
    } else if (state === "disconnected" && session.resumeToken) {
      // The network may be changing: give it a moment, then move the call.
      clearTimeout(session.resumeTimer);
      session.resumeTimer = setTimeout(() => resume(session, "connection lost"),
        RESUME_AFTER_MS);
    } else if (state === "failed" && session.resumeToken && session.id) {
      resume(session, "connection failed");
    } else if (state === "failed") {
      showError("The connection to the relay failed (ICE or DTLS). Is --ice-address set to " +
        "an address this browser can reach?");
      teardown(session, "failed");
    }
  };
}

/**
 * The relay sends RTP every 20 ms: once none has arrived for RESUME_AFTER_MS the path is
 * gone, seconds before the browser calls the connection "disconnected" (Chromium waits
 * for several missed consent checks). Polls the peer's inbound audio counter.
 */
function watchInbound(session, pc) {
  let last = -1;
  let since = performance.now();
  const timer = setInterval(async () => {
    if (call !== session || session.closed || session.pc !== pc) {
      clearInterval(timer);
      return;
    }
    if (session.resuming || !session.resumeToken || pc.connectionState !== "connected") return;
    let received = 0;
    try {
      (await pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") {
          received += report.packetsReceived || 0;
        }
      });
    } catch {
      return;
    }
    const now = performance.now();
    if (received !== last) {
      last = received;
      since = now;
    } else if (now - since >= RESUME_AFTER_MS) {
      clearInterval(timer);
      resume(session, "no audio from the relay");
    }
  }, INBOUND_POLL_MS);
}

/** The network changed (back online, or another connection type): move the call. */
function onNetworkChange(why) {
  const session = call;
  if (session && session.id && session.pc && session.pc.connectionState !== "connected") {
    resume(session, why);
  }
}
window.addEventListener("online", () => onNetworkChange("back online"));
if (navigator.connection) {
  navigator.connection.addEventListener("change", () => onNetworkChange("network changed"));
}

function watchChannel(session, channel) {
  channel.onopen = () => {
    if (call !== session || session.channel !== channel) return;
    logNote("data channel open");
    updateControls();
    if (session.configured) return;  // a resumed call keeps its session
    session.configured = true;
    const instructions = ui.instructions.value.trim();
    // A GPT-Live session got its instructions when it was created (they are immutable);
    // a captions-only call has no assistant to instruct.
    if (instructions && session.protocol !== "live" && !session.captionsOnly) {
      send({ type: "session.update", session: { type: "realtime", instructions } });
    }
  };
  channel.onmessage = (message) => {
    if (call !== session || session.channel !== channel) return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      logLine("in", "(not JSON)", String(message.data).slice(0, SUMMARY_CHARS), "error");
      return;
    }
    receive(event);
  };
  channel.onclose = () => {
    if (call !== session || session.closed || session.channel !== channel) return;
    if (session.resuming || session.pc.connectionState !== "connected") return;
    // The relay closes the channel when it ends the call (hangup elsewhere, timeouts).
    logNote("data channel closed by the relay");
    teardown(session, "closed");
  };
}

// ------------------------------------------------------------------- audio

/** An analyser fed by `stream`; not connected to the speakers. */
function analyse(context, stream) {
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  return analyser;
}

function playRemote(session, stream) {
  if (call !== session) return;
  // The <audio> element plays it; Chrome also only feeds a remote stream into WebAudio
  // while a media element is playing it.
  ui.audio.srcObject = stream;
  ui.audio.play().catch((error) => logNote(`audio playback blocked: ${error.message}`));
  session.analysers.remote = analyse(session.audio, stream);
}

/** Peak amplitude (0..1) of the analyser's latest window. */
function peak(analyser) {
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  let max = 0;
  for (const sample of samples) max = Math.max(max, Math.abs(sample));
  return max;
}

function updateMeters(session) {
  const { mic, remote } = session.analysers;
  if (mic) {
    demo.micLevel = peak(mic);
    demo.maxMicLevel = Math.max(demo.maxMicLevel, demo.micLevel);
    setMeter(demo.micLevel);
  }
  if (remote) {
    demo.remoteLevel = peak(remote);
    demo.maxRemoteLevel = Math.max(demo.maxRemoteLevel, demo.remoteLevel);
    turns.remoteLevel(demo.remoteLevel, performance.now());
    ui.speaking.style.setProperty("--level", demo.remoteLevel.toFixed(3));
  }
}

/** Show a 0..1 peak on the mic meter, on a -60..0 dBFS scale (how loudness feels). */
function setMeter(level) {
  const dbfs = level > 0 ? 20 * Math.log10(level) : -60;
  const percent = Math.round(Math.min(100, Math.max(0, (dbfs + 60) / 60 * 100)));
  ui.micFill.style.width = `${percent}%`;
  ui.micMeter.setAttribute("aria-valuenow", String(percent));
}

// ------------------------------------------------------------------ events

/** Handle one server event from the data channel. */
function receive(event) {
  demo.events.push(event);
  if (demo.events.length > MAX_EVENTS) demo.events.splice(0, demo.events.length - MAX_EVENTS);
  logLine("in", event.type, summarize(event), event.type === "error" ? "error" : "");

  switch (event.type) {
    case "error": {
      const error = event.error || {};
      if (QUIET_ERRORS.has(error.code)) break;
      const code = error.code ? ` (${error.code})` : "";
      showError(`The assistant reported an error: ${error.message || "unknown error"}${code}`);
      break;
    }
    case "relay.recording.started":
      // The relay's own event: this call is recorded (audio both ways and the events).
      ui.recording.hidden = false;
      break;
    case "response.created":
      activeResponseId = (event.response && event.response.id) || "unknown";
      break;
    case "response.done":
      activeResponseId = null;
      break;
    case "output_audio_buffer.started":
      setSpeaking(true);
      turns.replyAudioStarted();
      break;
    case "output_audio_buffer.stopped":
      setSpeaking(false);
      speakingItemId = null;
      break;
    case "output_audio_buffer.cleared":
      setSpeaking(false);
      if (speakingItemId) transcriptEntry(speakingItemId, "assistant").classList.add("cut");
      speakingItemId = null;
      break;
    case "conversation.item.added":
      addItem(event.item || {});
      break;
    case "relay.call.resumed":
      resumed(event);
      break;
    case "relay.upstream.restored":
      logNote(`the model's session was replaced (${event.reason}): ` +
        `${(event.items_restored || []).length} items restored`);
      break;
    case "info":  // GPT-Live's notices: the relay's own come as these on a Live session
      if (event.code === "call_resumed") resumed(event);
      if (event.code === "recording_started") ui.recording.hidden = false;
      if (event.code === "upstream_restored") {
        logNote(`the model's session was replaced (${event.reason}): ` +
          `${event.messages_restored ?? 0} messages of the conversation restored`);
      }
      break;
    case "input_audio_buffer.speech_started":
      turns.speechStarted();
      break;
    case "input_audio_buffer.speech_stopped":
      turns.speechStopped(performance.now());
      break;
    case "conversation.item.input_audio_transcription.delta":
      appendEntryText(event.item_id, "user", event.delta);
      break;
    case "conversation.item.input_audio_transcription.completed":
      setEntryText(event.item_id, "user", event.transcript);
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta":
      speakingItemId = event.item_id;
      appendEntryText(event.item_id, "assistant", event.delta);
      break;
    case "response.output_audio_transcript.done":
      setEntryText(event.item_id, "assistant", event.transcript);
      break;
    case "response.output_text.done":
      setEntryText(event.item_id, "assistant", event.text);
      break;
    case "session.input_transcript.delta":
      appendEntryText(liveTurnId("user"), "user", event.delta);
      break;
    case "session.output_transcript.delta":
      appendEntryText(liveTurnId("assistant"), "assistant", event.delta);
      setSpeaking(true);
      clearTimeout(liveQuietTimer);
      liveQuietTimer = setTimeout(() => setSpeaking(false), LIVE_QUIET_MS);
      break;
    default:
      break;
  }
}

/** The relay says the call resumed on the new peer connection. */
function resumed(event) {
  clearError();
  setState("connected");
  logNote(`call resumed: ${event.seconds_without_peer ?? "?"} s without a path, ` +
    `${event.assistant_audio_ms_held ?? 0} ms of reply audio held for you`);
}

/** The transcript entry of the current GPT-Live turn of ``role`` (a new one when the
 * other party spoke last). */
function liveTurnId(role) {
  if (liveTurn.role !== role) {
    liveTurn = { role, id: `live-${role}-${liveTurn.count + 1}`, count: liveTurn.count + 1 };
  }
  return liveTurn.id;
}

/** A short, human summary of an event for the log. */
function summarize(event) {
  const item = event.item || {};
  const response = event.response || {};
  const parts = (() => {
    switch (event.type) {
      case "session.created":
      case "session.started":
      case "session.updated": {
        const session = event.session || {};
        const voice = session.audio && session.audio.output && session.audio.output.voice;
        return [session.id, session.model, voice && `voice ${voice}`];
      }
      case "session.update":
        return [event.session && event.session.instructions && "instructions"];
      case "error":
        return [event.error && event.error.code, event.error && event.error.message];
      case "input_audio_buffer.speech_started":
        return [`at ${event.audio_start_ms} ms`];
      case "input_audio_buffer.speech_stopped":
        return [`at ${event.audio_end_ms} ms`];
      case "response.created":
      case "response.done":
        return [response.id, response.status];
      case "conversation.item.added":
      case "conversation.item.done":
      case "conversation.item.create":
        return [item.role || item.type, item.id, itemText(item) && `“${itemText(item)}”`];
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        return [JSON.stringify(event.delta)];
      case "response.output_audio_transcript.done":
        return [`“${event.transcript}”`];
      case "conversation.item.input_audio_transcription.completed":
        return [`“${event.transcript}”`];
      case "session.input_transcript.delta":
      case "session.output_transcript.delta":
        return [JSON.stringify(event.delta), `${event.start_ms}–${event.end_ms} ms`];
      case "session.delegation.created":
        return [event.delegation && event.delegation.id, `at ${event.offset_ms} ms`];
      case "session.closed":
        return [event.reason];
      case "rate_limits.updated":
        return (event.rate_limits || []).map((limit) => `${limit.name} ${limit.remaining}`);
      default:
        return [event.response_id, event.item_id];
    }
  })();
  const text = parts.filter(Boolean).join(" · ");
  return text.length > SUMMARY_CHARS ? `${text.slice(0, SUMMARY_CHARS - 1)}…` : text;
}

// -------------------------------------------------------------- transcript

/** Put a conversation item into the transcript, in the order the relay reports them. */
function addItem(item) {
  if (item.type !== "message" || !item.id) return;
  const role = item.role === "assistant" ? "assistant" : "user";
  const entry = transcriptEntry(item.id, role);
  const text = itemText(item);
  if (text) setEntryText(item.id, role, text);
  else if (role === "user" && !entry.querySelector(".text").textContent) {
    // A placeholder until its transcript (if the session transcribes) replaces it.
    entry.querySelector(".text").textContent = "(spoke)";
    entry.dataset.placeholder = "true";
  }
}

function itemText(item) {
  return (item.content || [])
    .map((part) => part.text || part.transcript || "")
    .join(" ")
    .trim();
}

/** The transcript line of an item, created at the end of the transcript if new. */
function transcriptEntry(itemId, role) {
  let entry = transcriptItems.get(itemId);
  if (!entry) {
    entry = document.createElement("li");
    entry.className = role;
    entry.dataset.itemId = itemId;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "assistant" ? "Assistant" : "You";
    const text = document.createElement("span");
    text.className = "text";
    entry.append(who, text);
    followTail(ui.transcript, () => ui.transcript.append(entry));
    transcriptItems.set(itemId, entry);
  }
  return entry;
}

function appendEntryText(itemId, role, delta) {
  if (!itemId || !delta) return;
  const entry = transcriptEntry(itemId, role);
  const text = entry.querySelector(".text");
  followTail(ui.transcript, () => {
    if (entry.dataset.placeholder) text.textContent = "";
    delete entry.dataset.placeholder;
    text.textContent += delta;
  });
}

function setEntryText(itemId, role, text) {
  if (!itemId || typeof text !== "string") return;
  const entry = transcriptEntry(itemId, role);
  const element = entry.querySelector(".text");
  followTail(ui.transcript, () => {
    delete entry.dataset.placeholder;
    element.textContent = text;
  });
}

// -------------------------------------------------------------------- view

function setState(state) {
  demo.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
}

function setSpeaking(speaking) {
  ui.speaking.dataset.speaking = String(speaking);
  ui.speakingText.textContent = speaking ? "Assistant speaking" : "Assistant quiet";
  if (!speaking) ui.speaking.style.setProperty("--level", "0");
}

function updateControls() {
  const open = Boolean(call && call.channel && call.channel.readyState === "open");
  // GPT-Live has no cancel and no typed user messages: the model handles interruptions.
  // A captions-only call has no assistant to interrupt or to type to.
  const talks = open && (!call || (call.protocol !== "live" && !call.captionsOnly));
  ui.start.disabled = Boolean(call);
  ui.hangup.disabled = !call;
  ui.captionsOnly.disabled = Boolean(call);
  ui.interrupt.disabled = !talks;
  ui.message.disabled = !talks;
  ui.send.disabled = !talks;
  for (const input of ui.protocol.querySelectorAll("input")) input.disabled = Boolean(call);
}

function resetCallView() {
  liveTurn = { role: null, id: null, count: 0 };
  clearTimeout(liveQuietTimer);
  demo.events = [];
  demo.callId = null;
  demo.micLevel = demo.maxMicLevel = demo.remoteLevel = demo.maxRemoteLevel = 0;
  ui.callId.textContent = "—";
  ui.recording.hidden = true;
  ui.transcript.replaceChildren();
  transcriptItems.clear();
  callStats.clear();
  turns.clear();
  speakingItemId = null;
  activeResponseId = null;
  ui.log.replaceChildren();
  updateLogCount();
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

/** A note from the page itself (not an event) in the log. */
function logNote(text) {
  logLine("note", "·", text);
}

/** Add a line to the log, newest last, keeping at most LOG_LINES. */
function logLine(direction, type, summary, extraClass = "") {
  const log = ui.log;
  const line = document.createElement("li");
  line.className = `${direction} ${extraClass}`.trim();
  const time = document.createElement("time");
  time.textContent = new Date().toISOString().slice(11, 23);
  const arrow = document.createElement("span");
  arrow.className = "dir";
  const arrowGlyph = document.createElement("span");
  arrowGlyph.setAttribute("aria-hidden", "true");
  arrowGlyph.textContent = { in: "←", out: "→", note: "" }[direction];
  const arrowWord = document.createElement("span");
  arrowWord.className = "visually-hidden";
  arrowWord.textContent = { in: "received", out: "sent", note: "note" }[direction];
  arrow.append(arrowGlyph, arrowWord);
  const kind = document.createElement("span");
  kind.className = "type";
  kind.textContent = type;
  const detail = document.createElement("span");
  detail.className = "summary";
  detail.textContent = summary;
  detail.title = summary;  // the whole summary, when the line is too narrow for it
  line.append(time, arrow, kind, detail);
  followTail(log, () => {
    log.append(line);
    while (log.childElementCount > LOG_LINES) log.firstElementChild.remove();
  });
  updateLogCount();
}

/**
 * Run `change` on a scrolling list, then keep showing its newest (last) lines, unless
 * the reader had scrolled up to read older ones. Only the list scrolls, never the page.
 */
function followTail(list, change) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  change();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function updateLogCount() {
  const count = ui.log.childElementCount;
  ui.logCount.textContent = count ? `(${count}${count >= LOG_LINES ? ", newest" : ""})` : "";
}

// ------------------------------------------------------------------- wiring

ui.start.addEventListener("click", () => start());
ui.hangup.addEventListener("click", () => hangup());
ui.interrupt.addEventListener("click", () => interrupt());
ui.messageForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text) return;
  sendText(text);
  ui.message.value = "";
});
// Leaving the page ends the call on the relay too (keepalive outlives the page).
window.addEventListener("pagehide", () => {
  if (call && call.id) postHangup(call.id, { keepalive: true }, call.protocol).catch(() => {});
});
