/**
 * Small live line charts on a <canvas>, for the demo page's call statistics.
 *
 * A chart keeps the last `window` samples; a sample has one value per series (a number,
 * or null where that series has nothing to say yet). Samples are evenly spaced from the
 * left, the newest last; a full window scrolls. The y axis starts at `min` and grows to fit what is shown (at least to
 * `max`). The canvas's `data-points` attribute says how many samples are drawn (those
 * with at least one value), so a test, or anyone, can read it without a global.
 */

/** The colours of series, by index: CSS custom properties of the page. */
const SERIES_COLOURS = ["--accent", "--speaking"];

/** A CSS custom property's value as `style` sees it, or `fallback`. */
function cssVar(style, name, fallback) {
  return style.getPropertyValue(name).trim() || fallback;
}

export class Chart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{series: string[], min?: number, max?: number, window?: number,
   *   format?: (value: number) => string}} options
   *   `series`: a label per series; `min`/`max`: the y range shown at least;
   *   `window`: samples kept; `format`: how the axis and readouts print a value.
   */
  constructor(canvas, { series, min = 0, max = 1, window = 120, format = String }) {
    this.canvas = canvas;
    this.series = series;
    this.min = min;
    this.max = max;
    this.window = window;
    this.format = format;
    /** @type {(number|null)[][]} */
    this.samples = [];
    this.draw();
  }

  /** Add a sample (an array with one value or null per series) and redraw. */
  push(values) {
    this.samples.push(values.map((v) => (Number.isFinite(v) ? v : null)));
    if (this.samples.length > this.window) this.samples.shift();
    this.draw();
  }

  /** Forget every sample. */
  clear() {
    this.samples = [];
    this.draw();
  }

  /** The latest value of series `index`, or null. */
  latest(index = 0) {
    for (let i = this.samples.length - 1; i >= 0; i -= 1) {
      const value = this.samples[i][index];
      if (value !== null) return value;
    }
    return null;
  }

  /** Samples with at least one value. */
  get points() {
    return this.samples.filter((sample) => sample.some((v) => v !== null)).length;
  }

  draw() {
    const { canvas } = this;
    // Draw at the screen's pixel density, at whatever size CSS gave the canvas.
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const top = this._top();
    const pad = 2 * ratio;
    // Oldest on the left; once the window is full, it scrolls left a step per sample.
    const x = (i) => pad + i * ((width - 2 * pad) / (this.window - 1));
    const y = (v) => height - pad - ((v - this.min) / (top - this.min)) * (height - 2 * pad);

    // The top of the scale, as a faint line and a label.
    ctx.strokeStyle = cssVar(style, "--border", "#ccc");
    ctx.lineWidth = ratio;
    ctx.beginPath();
    ctx.moveTo(0, pad);
    ctx.lineTo(width, pad);
    ctx.stroke();
    ctx.fillStyle = cssVar(style, "--muted", "#666");
    ctx.font = `${10 * ratio}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    ctx.fillText(this.format(top), pad, pad + ratio);

    this.series.forEach((_, s) => {
      ctx.strokeStyle = cssVar(style, SERIES_COLOURS[s % SERIES_COLOURS.length], "#36c");
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 1.5 * ratio;
      ctx.beginPath();
      let drawing = false;
      let lone = null;  // a value with no neighbour gets a dot, or it would not show
      this.samples.forEach((sample, i) => {
        const value = sample[s];
        if (value === null) {
          drawing = false;
          return;
        }
        const px = x(i);
        const py = y(Math.min(top, Math.max(this.min, value)));
        if (drawing) {
          ctx.lineTo(px, py);
          lone = null;
        } else {
          ctx.moveTo(px, py);
          lone = [px, py];
        }
        drawing = true;
      });
      ctx.stroke();
      if (lone) ctx.fillRect(lone[0] - ratio, lone[1] - ratio, 2 * ratio, 2 * ratio);
    });
    canvas.dataset.points = String(this.points);
  }

  /** The top of the y scale: `max`, or a round number above the largest value shown. */
  _top() {
    let largest = this.max;
    for (const sample of this.samples) {
      for (const value of sample) if (value !== null && value > largest) largest = value;
    }
    if (largest <= this.max) return this.max;
    // 1, 2 or 5 times a power of ten: a scale that reads at a glance.
    const power = 10 ** Math.floor(Math.log10(largest));
    const step = [1, 2, 5, 10].find((m) => m * power >= largest);
    return step * power;
  }
}
