"""The benchmark's outputs: a table on stdout, relay/baseline ratios, JSON, a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any]]
LATE_WARNING_MS = 20.0  # the load's own pacing lateness above which its timings are suspect


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if spec.endswith(".0f"):
        value = round(value)  # an int: no "-0"
    return format(value, spec)


def is_relay(server: str) -> bool:
    """The relay itself, or one of its variants (``relay-NAME``)."""
    return server == "relay" or server.startswith("relay-")


def ok_runs(results: Results, server: str) -> dict[int, dict[str, Any]]:
    """A server's successful concurrent runs by N; over rounds, the run of median CPU."""
    by_n: dict[int, list[dict[str, Any]]] = {}
    for run in results.get(server, {}).get("runs", []):
        if "error" not in run:
            by_n.setdefault(run["n"], []).append(run)
    return {
        n: sorted(runs, key=lambda r: r["cpu_pct_per_session"])[(len(runs) - 1) // 2]
        for n, runs in by_n.items()
    }


def _by_round(results: Results, server: str) -> dict[tuple[int, int], dict[str, Any]]:
    return {
        (run["n"], run.get("round", 0)): run
        for run in results.get(server, {}).get("runs", [])
        if "error" not in run
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratios(results: Results) -> list[dict[str, Any]]:
    """Per relay (or variant) and N: CPU over each baseline's and round trip minus it.

    Each ratio pairs runs of the same round (neighbours in time); over several rounds the
    row gives the median, and the per-round values beside it.
    """
    rows: list[dict[str, Any]] = []
    for server in (s for s in results if is_relay(s)):
        ours = _by_round(results, server)
        for n in sorted({n for n, _ in ours}):
            row: dict[str, Any] = {"server": server, "n": n}
            for base in ("rightsized", "bare"):
                theirs = _by_round(results, base)
                cpu: list[float] = []
                per_frame: list[float] = []
                rtt: list[float] = []
                for (run_n, round_), run in sorted(ours.items()):
                    other = theirs.get((run_n, round_))
                    if run_n != n or other is None:
                        continue
                    cpu.append(run["cpu_pct_per_session"] / other["cpu_pct_per_session"])
                    if run["frames_per_s_per_session"] and other["frames_per_s_per_session"]:
                        per_frame.append(cpu[-1] * other["frames_per_s_per_session"]
                                         / run["frames_per_s_per_session"])
                    a, b = run["rtt"]["median_ms"], other["rtt"]["median_ms"]
                    if a is not None and b is not None:
                        rtt.append(a - b)
                if cpu:
                    row[f"cpu_relay_over_{base}"] = _median(cpu)
                    row[f"cpu_relay_over_{base}_rounds"] = cpu
                if per_frame:
                    row[f"cpu_per_frame_relay_over_{base}"] = _median(per_frame)
                    row[f"cpu_per_frame_relay_over_{base}_rounds"] = per_frame
                if rtt:
                    row[f"rtt_relay_minus_{base}_ms"] = _median(rtt)
            rows.append(row)
    return rows


def table(results: Results) -> str:
    """The per server × N table, the sequential-call RSS lines and the ratios."""
    width = max([11, *(len(server) + 1 for server in results)])
    rounds = any(run.get("round", 0) for data in results.values() for run in data["runs"])
    head = (
        f"{'server':<{width}}{'N':>3}{' r' if rounds else ''} "
        f"{'cpu%/sess':>9} {'frm/s':>6} {'lost':>5} {'stall':>5} "
        f"{'maxgap':>7} {'rtt med':>8} {'p95':>6} {'drift':>6} {'clicks':>8} "
        f"{'rss/sess':>9} {'load%':>6} {'late':>6}"
    )
    lines = [head, "-" * len(head)]
    for server, data in results.items():
        for run in sorted(data["runs"], key=lambda r: (r["n"], r.get("round", 0))):
            label = f"{server:<{width}}{run['n']:>3}"
            if rounds:
                label += f"{run.get('round', 0) + 1:>2}"
            if "error" in run:
                lines.append(f"{label}  error: {run['error']}")
                continue
            rtt = run["rtt"]
            lines.append(
                f"{label} {run['cpu_pct_per_session']:>9.2f} "
                f"{run['frames_per_s_per_session']:>6.1f} {run['lost']:>5} {run['stalls']:>5} "
                f"{run['max_gap_ms']:>5.0f}ms {_fmt(rtt['median_ms'], '.0f'):>6}ms "
                f"{_fmt(rtt['p95_ms'], '.0f'):>4}ms {_fmt(rtt['drift_ms'], '+.0f'):>4}ms "
                f"{run['clicks_returned']:>3}/{run['clicks_sent']:<4} "
                f"{run['rss_per_session_kib'] / 1024:>6.2f}MiB {run['load_cpu_pct']:>5.0f}% "
                f"{run['load_late_max_ms']:>4.0f}ms"
                + ("  !" + "; ".join(run["errors"][:3]) if run["errors"] else "")
            )
    lines.append("")
    for server, data in results.items():
        seq = data.get("sequential")
        if not seq:
            continue
        if "error" in seq:
            lines.append(f"{server:<{width}} sequential calls: error: {seq['error']}")
            continue
        first_calls = seq.get("warmup_calls", 10)
        lines.append(
            f"{server:<{width}} {seq['calls']} sequential calls in {seq['seconds']:.0f} s: "
            f"RSS idle "
            f"{seq['rss_idle_kib'] / 1024:.1f} MiB, after {first_calls} "
            f"{seq['rss_first_kib'] / 1024:.1f} MiB,"
            f" last {seq['rss_last_kib'] / 1024:.1f} MiB, slope since "
            f"{_fmt(seq['rss_slope_kib_per_call'], '+.1f')} KiB/call"
            + (f"  ({len(seq['errors'])} errors)" if seq["errors"] else "")
        )
    for row in ratios(results):
        parts: list[str] = []
        name = row["server"]
        for base in ("rightsized", "bare"):
            if f"cpu_relay_over_{base}" in row:
                part = f"cpu {name}/{base} {row[f'cpu_relay_over_{base}']:.2f}"
                rounds = row[f"cpu_relay_over_{base}_rounds"]
                if len(rounds) > 1:
                    part += " (rounds " + " ".join(f"{r:.2f}" for r in rounds) + ")"
                parts.append(part)
            if f"cpu_per_frame_relay_over_{base}" in row:
                # A starved relay skips frames (its pacing re-anchors) and so spends less
                # per call; per frame returned the comparison stays fair.
                part = f"per frame {row[f'cpu_per_frame_relay_over_{base}']:.2f}"
                rounds = row[f"cpu_per_frame_relay_over_{base}_rounds"]
                if len(rounds) > 1:
                    part += " (rounds " + " ".join(f"{r:.2f}" for r in rounds) + ")"
                parts.append(part)
            if f"rtt_relay_minus_{base}_ms" in row:
                parts.append(f"rtt {name}-{base} {row[f'rtt_relay_minus_{base}_ms']:+.0f} ms")
        if parts:
            lines.append(f"ratios N={row['n']}: " + ", ".join(parts))
    if any(
        run.get("load_late_max_ms", 0) > LATE_WARNING_MS
        for data in results.values()
        for run in data["runs"]
    ):
        lines.append(
            f"note: 'late' over {LATE_WARNING_MS:.0f} ms means the load process itself was"
            " descheduled (a busy machine): stalls and round trips of that run are partly"
            " the load's, not the server's."
        )
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], results: Results) -> None:
    """Write meta, results and ratios as one JSON document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "results": results, "ratios": ratios(results)}
    path.write_text(json.dumps(document, indent=1) + "\n")


def write_plot(path: Path, results: Results) -> bool:
    """CPU per session and round trip (median, p95 bar) against N; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (cpu_ax, rtt_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in results:
        runs = ok_runs(results, server)
        ns = sorted(runs)
        if not ns:
            continue
        cpu_ax.plot(ns, [runs[n]["cpu_pct_per_session"] for n in ns], "o-", label=server)
        rtt_ns = [n for n in ns if runs[n]["rtt"]["median_ms"] is not None]
        med = [runs[n]["rtt"]["median_ms"] for n in rtt_ns]
        p95 = [runs[n]["rtt"]["p95_ms"] - runs[n]["rtt"]["median_ms"] for n in rtt_ns]
        rtt_ax.errorbar(rtt_ns, med, yerr=[[0] * len(p95), p95], fmt="o-", capsize=4, label=server)
    cpu_ax.set(
        xlabel="concurrent sessions N",
        ylabel="server CPU, % of one core per session",
        title="CPU per session",
    )
    rtt_ax.set(
        xlabel="concurrent sessions N",
        ylabel="echo round trip, ms (median, bar to p95)",
        title="Round trip",
    )
    all_ns = sorted({n for server in results for n in ok_runs(results, server)})
    for ax in (cpu_ax, rtt_ax):
        ax.set_xticks(all_ns)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
