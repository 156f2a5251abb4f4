"""The capacity question: how many concurrent calls one box holds, per number of workers.

A configuration *holds* N calls when, over the measured window, every call connected and
got media, no call stalled (no gap over ``metrics.STALL_GAP`` in its echoed audio), and
the pooled echo round trip's p95 is within :data:`P95_MARGIN_MS` of the same
configuration's unloaded figure (its p95 with ``unloaded_n`` calls). Its capacity is the
largest N that holds.

Each configuration (``relay serve --workers W``, and with ``--variant NAME=ARGS`` the
same for another tree or other arguments, named ``relay-NAME-wW``) is measured in the
same run, taking
turns per N so a busy spell on a shared machine hits them alike: first the unloaded
figure, then N = step, 2·step, ... up to ``max_n`` until N fails, then a bisection between
the last N that held and the first that failed, down to ``resolution`` calls. Every run is
a fresh server and a fresh load process (benchlib.runner). Nothing is pinned: the workers
may use every core, and so do the load process and the echo upstream, whose CPU shares
the report gives beside the server's (a load generator on the same box takes cores from
the server it measures; its share says how much).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import runner

#: How far above the unloaded p95 a loaded p95 may be and still hold.
P95_MARGIN_MS = 10.0


@dataclass(frozen=True)
class Ramp:
    """How the number of calls grows."""

    workers: tuple[int, ...]
    step: int
    max_n: int
    resolution: int
    unloaded_n: int = 1


def server_name(workers: int) -> str:
    """The run's name for ``relay serve --workers W``."""
    return f"relay-w{workers}"


def verdict(run: dict[str, Any], unloaded_p95: float | None) -> str | None:
    """Why ``run`` does not hold its N (None: it holds)."""
    if "error" in run:
        return f"run failed: {run['error']}"
    missing = run["n"] - run["sessions"]
    if missing:
        return f"{missing} of {run['n']} calls did not connect"
    no_media = [e for e in run["errors"] if e.startswith("no media")]
    if no_media:
        return f"{len(no_media)} calls got no media"
    if run["stalls"]:
        return f"{run['stalls']} stalls (longest gap {run['max_gap_ms']:.0f} ms)"
    p95 = run["rtt"]["p95_ms"]
    if p95 is None:
        return "no round trip measured"
    if unloaded_p95 is None:
        return "no unloaded figure to compare with"
    if p95 > unloaded_p95 + P95_MARGIN_MS:
        return (f"round trip p95 {p95:.0f} ms > unloaded {unloaded_p95:.0f} + "
                f"{P95_MARGIN_MS:.0f} ms")
    return None


def unloaded_problem(run: dict[str, Any]) -> str | None:
    """Why ``run`` gives no unloaded figure (None: its p95 is the figure)."""
    if "error" in run:
        return f"run failed: {run['error']}"
    if run["sessions"] < run["n"] or run["rtt"]["p95_ms"] is None:
        return "no round trip measured"
    return None


class Search:
    """One configuration's ramp: what held, what failed, what to try next."""

    def __init__(self, workers: int, ramp: Ramp, name: str | None = None) -> None:
        self.workers = workers
        self.ramp = ramp
        #: The configuration's server name (default: ``server_name(workers)``).
        self.name = name or server_name(workers)
        self.unloaded_p95: float | None = None
        self.unloaded_problem: str | None = None
        self.held = 0
        self.failed: int | None = None
        self.why_failed: str | None = None

    def next_n(self) -> int | None:
        """The next N to run (None: done): up the ramp, then the bisection."""
        if self.unloaded_problem is not None:
            return None
        if self.failed is None:
            n = self.held + self.ramp.step if self.held else self.ramp.step
            return n if n <= self.ramp.max_n else None
        if self.failed - self.held > self.ramp.resolution:
            return (self.held + self.failed) // 2
        return None

    def record(self, n: int, problem: str | None) -> None:
        """The outcome of N calls."""
        if problem is None:
            self.held = max(self.held, n)
        elif self.failed is None or n < self.failed:
            self.failed, self.why_failed = n, problem

    def summary(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The configuration's capacity and the figures of its run at that N."""
        at = next((r for r in runs if r["n"] == self.held and "error" not in r), None)
        cpus = (at or {}).get("cpus") or 1
        return {
            "server": self.name,
            "workers": self.workers,
            "capacity": self.held,
            "capacity_is_at_least": self.failed is None and self.unloaded_problem is None,
            "unloaded_p95_ms": self.unloaded_p95,
            "unloaded_problem": self.unloaded_problem,
            "first_failing_n": self.failed,
            "why_failed": self.why_failed,
            "at_capacity": None if at is None else {
                "rtt_p95_ms": at["rtt"]["p95_ms"],
                "server_cpu_pct": at["server_cpu_pct"],
                "server_cpu_pct_by_process": at.get("server_cpu_pct_by_process"),
                "load_cpu_pct": at["load_cpu_pct"],
                "upstream_cpu_pct": at.get("upstream_cpu_pct"),
                "load_share_of_box_pct": at["load_cpu_pct"] / cpus,
                "load_late_max_ms": at["load_late_max_ms"],
            },
        }


def run_capacity(plan: runner.Plan, ramp: Ramp) -> tuple[dict[str, dict[str, Any]],
                                                         list[dict[str, Any]]]:
    """Measure every configuration of ``ramp``; return the runs (as ``run_plan`` returns
    them) and one summary per configuration. Children are stopped whatever happens."""
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    procs = runner.Processes()
    searches = {name: Search(runner.workers_in(runner.variant_args(args)[1]), ramp, name)
                for name, args in plan.variants.items()}
    results: dict[str, dict[str, Any]] = {
        name: {"runs": [], "sequential": None} for name in searches}
    try:
        for name, search in searches.items():
            run = runner.concurrent_run(procs, plan, name, ramp.unloaded_n, 0)
            results[name]["runs"].append({**run, "unloaded": True})
            # Only its round trip counts: a stall here is the machine's, and shows in the table.
            problem = unloaded_problem(run)
            if problem is not None:
                search.unloaded_problem = problem
                runner.log(f"{name}: no unloaded figure ({problem})")
            else:
                search.unloaded_p95 = run["rtt"]["p95_ms"]
        # Configurations take turns at each step; each stops on its own.
        while True:
            pending = [(name, s, n) for name, s in searches.items()
                       if (n := s.next_n()) is not None]
            if not pending:
                break
            for name, search, n in pending:
                run = runner.concurrent_run(procs, plan, name, n, 0)
                results[name]["runs"].append(run)
                problem = verdict(run, search.unloaded_p95)
                search.record(n, problem)
                runner.log(f"{name} N={n}: " + ("holds" if problem is None else problem))
    finally:
        procs.stop_all()
    summaries = [search.summary([r for r in results[name]["runs"] if not r.get("unloaded")])
                 for name, search in searches.items()]
    return results, summaries


def table(summaries: list[dict[str, Any]]) -> str:
    """The capacity lines of the report."""
    lines = [f"capacity: zero stalls and round-trip p95 within {P95_MARGIN_MS:.0f} ms of the "
             "unloaded figure"]
    for summary in summaries:
        name = summary.get("server") or server_name(summary["workers"])
        if summary["unloaded_problem"]:
            lines.append(f"  {name}: no unloaded figure: {summary['unloaded_problem']}")
            continue
        held = summary["capacity"]
        more = "+ (the ramp's end)" if summary["capacity_is_at_least"] else ""
        line = (f"  {name}: {held}{more} calls (unloaded p95 "
                f"{summary['unloaded_p95_ms']:.0f} ms)")
        at = summary["at_capacity"]
        if at is not None:
            line += (f"; at {held}: p95 {at['rtt_p95_ms']:.0f} ms, server CPU "
                     f"{at['server_cpu_pct']:.0f}% of a core "
                     f"(by process {at['server_cpu_pct_by_process']}), load generator "
                     f"{at['load_cpu_pct']:.0f}% of a core ({at['load_share_of_box_pct']:.0f}% "
                     f"of the box), echo upstream {_pct(at['upstream_cpu_pct'])}, load late "
                     f"up to {at['load_late_max_ms']:.0f} ms")
        if summary["first_failing_n"] is not None:
            line += f"; {summary['first_failing_n']} fails: {summary['why_failed']}"
        lines.append(line)
    held = {s["workers"]: s["capacity"] for s in summaries
            if not s["unloaded_problem"] and s.get("server", server_name(s["workers"]))
            == server_name(s["workers"])}
    if 1 in held and held[1]:
        for workers, calls in sorted(held.items()):
            if workers != 1:
                lines.append(f"  {server_name(workers)} / {server_name(1)}: "
                             f"{calls / held[1]:.2f}x the calls")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}% of a core"
