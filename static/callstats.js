/**
 * What the demo page shows of a call's network and latency, all measured in the browser.
 *
 * `CallStats` samples `RTCPeerConnection.getStats()` every half second and charts:
 *   - round-trip time: `remote-inbound-rtp.roundTripTime`, from the relay's RTCP receiver
 *     reports about the microphone audio this page sends;
 *   - jitter, both ways: of what the page sends as the relay reports it
 *     (`remote-inbound-rtp.jitter`), of what it receives as it measures it (`inbound-rtp`);
 *   - packet loss, both ways: the relay's `fractionLost` of its last report, and the share
 *     of the relay's packets lost since the previous sample (`inbound-rtp.packetsLost`);
 *   - audio levels, both ways: the microphone (`media-source.audioLevel`) and the
 *     assistant (`inbound-rtp.audioLevel`), in dBFS.
 *
 * `TurnTimer` measures each turn's latency: from the end of the user's speech (the
 * upstream's `input_audio_buffer.speech_stopped` arriving on the data channel) to the
 * first reply audio heard.
 */

import { Chart } from "/static/charts.js";

/** How often getStats() is sampled. */
export const STATS_INTERVAL_MS = 500;
/** Samples kept per chart: half a minute. */
const WINDOW = 60;
/** Levels below this are drawn at the chart's floor. */
const FLOOR_DBFS = -60;
/** A reply is heard once its audio peaks above this (0..1; about -40 dBFS): the relay's
 * silence decodes to digital zero, the quietest start of a spoken word is well above. */
export const HEARD_LEVEL = 0.01;
/** Turns listed, newest first. */
const MAX_TURNS = 50;

/** Readouts of two-way charts: sent, received (the legend says which is which). */
const ARROWS = ["↑", "↓"];
const ms = (value) => `${Math.round(value)} ms`;
const percent = (value) => `${value >= 10 ? Math.round(value) : value.toFixed(1)}%`;
const dbfs = (value) => `${Math.round(value)} dB`;
const toDbfs = (level) => (level > 0 ? Math.max(FLOOR_DBFS, 20 * Math.log10(level)) : FLOOR_DBFS);

/** The charts of the call statistics panel, fed from getStats(). */
export class CallStats {
  /**
   * @param {HTMLElement} panel holds a `canvas[data-chart=NAME]` and an
   *   `[data-readout=NAME]` for each chart: rtt, jitter, loss, level.
   */
  constructor(panel) {
    this.panel = panel;
    const canvas = (name) => panel.querySelector(`canvas[data-chart="${name}"]`);
    this.charts = {
      rtt: new Chart(canvas("rtt"), { series: ["round trip"], max: 50, window: WINDOW, format: ms }),
      jitter: new Chart(canvas("jitter"), {
        series: ["sent", "received"], max: 20, window: WINDOW, format: ms,
      }),
      loss: new Chart(canvas("loss"), {
        series: ["sent", "received"], max: 5, window: WINDOW, format: percent,
      }),
      level: new Chart(canvas("level"), {
        series: ["you", "assistant"], min: FLOOR_DBFS, max: 0, window: WINDOW, format: dbfs,
      }),
    };
    this.timer = null;
    this.previous = null;  // the last inbound-rtp sample, for loss over an interval
  }

  /** Sample `pc` every STATS_INTERVAL_MS until stop(). */
  start(pc) {
    this.stop();
    this.clear();
    let busy = false;
    this.timer = setInterval(async () => {
      if (busy) return;  // a slow getStats() must not pile up calls
      busy = true;
      try {
        this.sample(await pc.getStats());
      } catch {
        // the connection closed under us: stop() follows
      } finally {
        busy = false;
      }
    }, STATS_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  clear() {
    this.previous = null;
    for (const chart of Object.values(this.charts)) chart.clear();
    for (const readout of this.panel.querySelectorAll("[data-readout]")) readout.textContent = "";
  }

  /** Add one getStats() report to the charts. */
  sample(report) {
    const audio = { source: null, remote: null, inbound: null };
    report.forEach((stat) => {
      if (stat.kind !== "audio" && stat.mediaType !== "audio") return;
      if (stat.type === "media-source") audio.source = stat;
      else if (stat.type === "remote-inbound-rtp") audio.remote = stat;
      else if (stat.type === "inbound-rtp") audio.inbound = stat;
    });
    const { source, remote, inbound } = audio;
    const seconds = (value) => (Number.isFinite(value) ? value * 1000 : null);
    this.charts.rtt.push([seconds(remote && remote.roundTripTime)]);
    this.charts.jitter.push([seconds(remote && remote.jitter), seconds(inbound && inbound.jitter)]);
    this.charts.loss.push([
      remote && Number.isFinite(remote.fractionLost) ? remote.fractionLost * 100 : null,
      this._receivedLoss(inbound),
    ]);
    this.charts.level.push([
      source && Number.isFinite(source.audioLevel) ? toDbfs(source.audioLevel) : null,
      inbound && Number.isFinite(inbound.audioLevel) ? toDbfs(inbound.audioLevel) : null,
    ]);
    this._readouts();
  }

  /** Percent of the relay's packets lost since the previous sample. */
  _receivedLoss(inbound) {
    if (!inbound || !Number.isFinite(inbound.packetsReceived)) return null;
    const previous = this.previous;
    this.previous = inbound;
    if (!previous) return null;
    const lost = Math.max(0, (inbound.packetsLost || 0) - (previous.packetsLost || 0));
    const received = inbound.packetsReceived - previous.packetsReceived;
    return lost + received > 0 ? (100 * lost) / (lost + received) : 0;
  }

  _readouts() {
    for (const [name, chart] of Object.entries(this.charts)) {
      const readout = this.panel.querySelector(`[data-readout="${name}"]`);
      if (!readout) continue;
      readout.textContent = chart.series
        .map((_, i) => {
          const value = chart.latest(i);
          if (value === null) return null;
          return chart.series.length > 1 ? `${ARROWS[i]} ${chart.format(value)}` : chart.format(value);
        })
        .filter(Boolean)
        .join(" · ");
    }
  }
}

/**
 * Each turn's latency: from `speech_stopped` to the first reply audio heard.
 *
 * "Heard" is taken from the decoded remote audio itself: an AnalyserNode on the remote
 * stream, read every few tens of ms by the page's meter timer, peaking above HEARD_LEVEL.
 * That audio has crossed the network and the browser's jitter buffer, so it is what the
 * user hears, give or take the output device. The alternatives measure less: the relay's
 * `output_audio_buffer.started` is sent when the relay pulls the reply's first frame, on
 * another path (SCTP), before the network and the jitter buffer; getStats' `audioLevel` or
 * `totalAudioEnergy` are only as fresh as a poll every half second; and the audio deltas
 * never come on the data channel of a WebRTC call. The `started` event does serve as a
 * gate: audio counts only once the reply to this turn has started, so the tail of an
 * earlier reply (with `interrupt_response` off) is not taken for it.
 */
export class TurnTimer {
  /** @param {HTMLOListElement} list where turns are shown, newest first */
  constructor(list) {
    this.list = list;
    this.waitingSince = null;
    this.replyStarted = false;
    this.count = 0;
  }

  clear() {
    this.waitingSince = null;
    this.replyStarted = false;
    this.count = 0;
    this.list.replaceChildren();
  }

  /** The upstream's VAD says the user stopped speaking (at `now`, performance.now()). */
  speechStopped(now) {
    this.waitingSince = now;
    this.replyStarted = false;
  }

  /** `output_audio_buffer.started`: the relay began sending a reply's audio. */
  replyAudioStarted() {
    if (this.waitingSince !== null) this.replyStarted = true;
  }

  /** The user started speaking again before any reply was heard: that turn goes on. */
  speechStarted() {
    this.waitingSince = null;
  }

  /** The remote audio peaked at `level` (0..1) at `now`; returns a latency when it ends a wait. */
  remoteLevel(level, now) {
    if (this.waitingSince === null || !this.replyStarted || level <= HEARD_LEVEL) return null;
    const latency = now - this.waitingSince;
    this.waitingSince = null;
    this._show(latency);
    return latency;
  }

  _show(latency) {
    this.count += 1;
    const item = document.createElement("li");
    item.dataset.latencyMs = String(Math.round(latency));
    const label = document.createElement("span");
    label.className = "turn";
    label.textContent = `Turn ${this.count}`;
    const bar = document.createElement("span");
    bar.className = "bar";
    // Full width at 2 s: most turns read as a share of that.
    bar.style.setProperty("--share", String(Math.min(1, latency / 2000)));
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = ms(latency);
    item.append(label, bar, value);
    this.list.prepend(item);
    while (this.list.childElementCount > MAX_TURNS) this.list.lastElementChild.remove();
  }
}
