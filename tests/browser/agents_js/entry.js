/*
 * The official OpenAI Agents SDK for JavaScript, unmodified, driven the way an app would
 * drive it: a RealtimeAgent in a RealtimeSession over the OpenAIRealtimeWebRTC transport,
 * whose only change is `baseUrl`, pointed at the relay. The relay's browser test bundles
 * this file with esbuild and reads what happened from `window.agentTest`.
 *
 * Nothing here touches the SDK. The page watches the wire by wrapping the browser's own
 * RTCPeerConnection.createDataChannel (each message in and out, as sent), and watches the
 * SDK through its public events.
 */
import {
  DEFAULT_OPENAI_REALTIME_MODEL,
  OpenAIRealtimeWebRTC,
  RealtimeAgent,
  RealtimeSession,
  tool,
} from '@openai/agents-realtime';

/* Server events the SDK has a schema for. The transport emits each under its own name
 * only when the event passes that schema, so counting these tells whether the SDK
 * understood what the relay sent, not just received it. */
const TYPED_EVENTS = [
  'conversation.item.added', 'conversation.item.done', 'conversation.item.deleted',
  'conversation.item.retrieved', 'conversation.item.truncated',
  'input_audio_buffer.cleared', 'input_audio_buffer.committed',
  'input_audio_buffer.speech_started', 'input_audio_buffer.speech_stopped',
  'output_audio_buffer.started', 'output_audio_buffer.stopped', 'output_audio_buffer.cleared',
  'rate_limits.updated', 'response.output_audio.done',
  'response.output_audio_transcript.delta', 'response.output_audio_transcript.done',
  'response.content_part.added', 'response.content_part.done', 'response.created',
  'response.done', 'response.output_item.added', 'response.output_item.done',
  'response.output_text.delta', 'response.output_text.done',
  'session.created', 'session.updated', 'error',
];

const state = {
  /** Every data channel message, in order: {dir: 'in' | 'out', at: ms, event}. */
  wire: [],
  /** What the transport emitted on '*' (every server event it parsed), in order. */
  events: [],
  /** Server event types the SDK parsed against its own schema, in order. */
  typed: [],
  typedNames: TYPED_EVENTS,
  /** The transport's connection states, in order. */
  states: [],
  /** RealtimeSession's own events: {name, ...detail}. */
  session: [],
  /** Errors the session reported, as text. */
  errors: [],
  /** The loudest assistant audio heard so far (0..1 peak), and the loudest since reset. */
  maxRemoteLevel: 0,
  callId: null,
  connectedAt: null,
  model: DEFAULT_OPENAI_REALTIME_MODEL,
  agentsSdk: null,
};
window.agentTest = state;

/* Record every data channel message, both ways, before the SDK sees it. */
const createDataChannel = RTCPeerConnection.prototype.createDataChannel;
RTCPeerConnection.prototype.createDataChannel = function (...args) {
  const channel = createDataChannel.apply(this, args);
  channel.addEventListener('message', (message) => {
    state.wire.push({ dir: 'in', at: performance.now(), event: JSON.parse(message.data) });
  });
  const send = channel.send;
  channel.send = function (data) {
    state.wire.push({ dir: 'out', at: performance.now(), event: JSON.parse(data) });
    return send.call(this, data);
  };
  return channel;
};

/* Note the SDK's own header (it makes the offer a preflighted cross-origin request). */
const nativeFetch = window.fetch;
window.fetch = function (input, init) {
  const headers = new Headers(init?.headers);
  if (headers.has('X-OpenAI-Agents-SDK')) {
    state.agentsSdk = headers.get('X-OpenAI-Agents-SDK');
  }
  return nativeFetch.call(this, input, init);
};

/** Mint a short-lived `ek_` key on the relay, as an app's backend would. */
async function mintClientKey(relay, serverKey, session) {
  const response = await nativeFetch(`${relay}/v1/realtime/client_secrets`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${serverKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ expires_after: { anchor: 'created_at', seconds: 600 }, session }),
  });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(`client_secrets answered ${response.status}: ${JSON.stringify(body)}`);
  }
  return body.value;
}

/** Sample the peak level of the remote (assistant) audio track every 20 ms. */
function meterRemoteAudio(peerConnection) {
  const context = new AudioContext();
  const meter = (track) => {
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      if (track.readyState === 'ended') {
        clearInterval(timer);
        context.close();
        return;
      }
      analyser.getFloatTimeDomainData(samples);
      let peak = 0;
      for (const sample of samples) peak = Math.max(peak, Math.abs(sample));
      state.maxRemoteLevel = Math.max(state.maxRemoteLevel, peak);
    }, 20);
  };
  peerConnection.addEventListener('track', (event) => meter(event.track));
}

/**
 * Start a voice agent on the relay at `config.relay` (its origin, e.g. http://127.0.0.1:8000).
 * `config.serverKey` mints the `ek_` key; `config.instructions` and `config.turnDetection`
 * shape the agent's session. Resolves once `session.connect()` has resolved.
 */
window.startAgent = async function startAgent(config) {
  const agent = new RealtimeAgent({
    name: 'Relay test agent',
    instructions: config.instructions,
    tools: [
      tool({
        name: 'get_time',
        description: 'The current time, as an ISO 8601 string.',
        parameters: { type: 'object', properties: {}, required: [], additionalProperties: false },
        strict: true,
        execute: async () => new Date().toISOString(),
      }),
    ],
  });
  const transport = new OpenAIRealtimeWebRTC({
    baseUrl: `${config.relay}/v1/realtime/calls`,
    changePeerConnection: (peerConnection) => {
      meterRemoteAudio(peerConnection);
      return peerConnection;
    },
  });
  const session = new RealtimeSession(agent, {
    transport,
    config: { audio: { input: { turnDetection: config.turnDetection } } },
  });
  window.agentSession = session;

  transport.on('*', (event) => state.events.push(event));
  for (const type of TYPED_EVENTS) {
    transport.on(type, () => state.typed.push(type));
  }
  transport.on('connection_change', (status) => state.states.push(status));
  session.on('error', (error) => state.errors.push(describeError(error)));
  session.on('agent_start', () => state.session.push({ name: 'agent_start' }));
  session.on('agent_end', (_context, _agent, text) => {
    state.session.push({ name: 'agent_end', text });
  });
  session.on('history_updated', (history) => {
    state.session.push({
      name: 'history_updated',
      items: history.map((item) => ({ id: item.itemId, type: item.type, role: item.role,
                                       status: item.status })),
    });
  });

  // The key carries the session the SDK is about to ask for, as its docs suggest.
  const wireSession = transport.buildSessionPayload(await session.getInitialSessionConfig());
  await session.connect({
    apiKey: () => mintClientKey(config.relay, config.serverKey, wireSession),
  });
  state.connectedAt = performance.now();
  state.callId = transport.callId;
};

function describeError(error) {
  const inner = error?.error;
  if (inner instanceof Error) return `${inner.name}: ${inner.message}`;
  try {
    return JSON.stringify(inner ?? error);
  } catch {
    return String(inner ?? error);
  }
}
