"""Writes a run's results: results.json, report.md and chart.png (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CHART_FILE = "chart.png"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _agg_row(name: str, a: dict[str, Any]) -> list[str]:
    return [name, str(a["cases"]), _pct(a["pass_rate"]), _pct(a["detection_rate"]), _pct(a["category_accuracy"]),
            _pct(a["action_accuracy"]), _pct(a.get("eventual_accuracy")), _num(a["mean_ticks_to_detect"]),
            f"{a['controls_clean']}/{a['controls']}", str(a["false_actions"]), str(a["unsafe_actions"]),
            _pct(a["audit_completeness"])]


AGG_HEADER = ["group", "cases", "pass", "detected", "category", "action+target", "right later", "ticks to detect",
              "controls clean", "false actions", "unsafe", "audit complete"]


def model_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for run in results["runs"]:
        s = run["summary"]
        rows.append([run["label"], str(s["cases"]), _pct(s["pass_rate"]), _pct(s["category_accuracy"]),
                     _pct(s["action_accuracy"]), _num(s["mean_ticks_to_detect"]), str(s["false_actions"]),
                     str(s["unsafe_actions"]), str(s["llm_calls"]),
                     str(s["llm_fallbacks"]), str(s["tokens_in"] + s["tokens_out"]), f"${s['cost_usd']:.4f}",
                     _num(s["llm_latency_ms"]), f"{run['wall_seconds']:.1f}s"])
    return _table(["model", "cases", "pass", "category", "action+target", "ticks to detect", "false actions", "unsafe",
                   "LLM calls", "fallbacks", "tokens", "cost", "LLM latency ms", "wall"], rows)


def markdown(results: dict[str, Any], gate: list[str] | None = None, with_chart: bool = True) -> str:
    lines = [f"# payops evaluation — {results['created_at']}", "",
             f"Corpus: {results['corpus']}; tags: {', '.join(results['tags']) or 'all'}; "
             f"wall time {results['wall_seconds']:.1f}s.", ""]
    if gate is not None:
        lines += ["## Regression gate", "", "PASSED" if not gate else "FAILED:", *[f"- {g}" for g in gate], ""]
    lines += ["## Models", "", *model_table(results), ""]
    if with_chart:
        lines += [f"![per-category accuracy and closed-loop outcomes]({CHART_FILE})", ""]
    for run in results["runs"]:
        lines += [f"## {run['label']}", ""]
        g = run["summary"].get("guardrail") or {}
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(g.items())) or "none"
        lines += ["### Overall", "", *_table(AGG_HEADER, [_agg_row("all", run["summary"])]), "",
                  "Guardrail verdicts on first responses: " + verdicts + ".", ""]
        for title, key in (("By expected category", "by_category"), ("By difficulty", "by_difficulty"),
                           ("By tag", "by_tag")):
            lines += [f"### {title}", "", *_table(AGG_HEADER, [_agg_row(k, v) for k, v in run[key].items()]), ""]
        cl = run.get("closed_loop_summary")
        if cl:
            lines += ["### Closed loop (simulator cases)", "",
                      f"{cl['cases']} cases; payments saved vs nobody acting — agent {cl['saved_agent']}, "
                      f"static-threshold alerting {cl['saved_static']}, oracle {cl['saved_oracle']}. "
                      f"Share of the oracle's savings (over the {cl['cases_with_oracle_saving']} cases where the "
                      f"oracle saves >= {cl['min_oracle_saved']}): agent {_pct(cl['share_of_oracle_agent'])}, "
                      f"static {_pct(cl['share_of_oracle_static'])}. "
                      f"Median time to mitigate: agent {_num(cl['median_time_to_mitigate_s_agent'])} s, "
                      f"static {_num(cl['median_time_to_mitigate_s_static'])} s. "
                      f"Agent runs with significantly fewer payments than nobody acting: "
                      f"{', '.join(cl['agent_worse_than_none']) or 'none'}.", ""]
            rows = []
            for r in run["closed_loop"]:
                o = r["outcomes"]

                def ttm(policy: str, outcomes: dict[str, Any] = o) -> str:  # bound now, not at call time
                    return _num(outcomes.get(policy, {}).get("mitigated_after_s"))

                rows.append([r["case_id"], f"{r['volume']:g}", str(o.get("none", {}).get("paid", "–")),
                             _num(r["saved_agent"]), _num(r["saved_static"]), _num(r["saved_oracle"]),
                             _pct(r["share_agent"]), ttm("agent"), ttm("static"),
                             _num(r["failed_attempts_avoided_agent"]), str(o.get("oracle", {}).get("action") or "–"),
                             r["error"] or ""])
            lines += _table(["case", "ppm", "paid (none)", "saved agent", "saved static", "saved oracle",
                             "agent/oracle", "ttm agent s", "ttm static s", "failed attempts avoided (agent)",
                             "oracle action", "error"], rows)
            lines.append("")
        failing = [c for c in run["cases"] if not c["passed"]]
        lines += [f"### Cases not passing ({len(failing)})", ""]
        if failing:
            rows = []
            for c in failing:
                fr = c["first_response"] or {}
                got = (f"{fr.get('category')} / {fr.get('tool')} {fr.get('target')} ({fr.get('verdict')})" if fr
                       else "no response")
                wrong = [*c.get("false_action_details", [])[:2], *c["unsafe_details"][:2]]
                rows.append([c["case_id"], c["expected_category"], c["difficulty"], ", ".join(c["failures"]), got,
                             "; ".join(dict.fromkeys(wrong)), c["error"] or ""])
            lines += _table(["case", "expected", "difficulty", "failed checks", "first response",
                             "false / unsafe actions", "error"], rows)
        else:
            lines.append("None.")
        lines.append("")
        if run["skipped"]:
            lines += [f"### Skipped ({len(run['skipped'])})", "",
                      *[f"- {s['case_id']}: {s['reason']}" for s in run["skipped"]], ""]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = results["runs"]
    closed_run = next((r for r in runs if r.get("closed_loop")), None)
    fig, axes = plt.subplots(1, 2 if closed_run else 1, figsize=(15 if closed_run else 8, 5.5), squeeze=False)
    ax = axes[0][0]
    categories = sorted({k for r in runs for k in r["by_category"]})
    x = np.arange(len(categories))
    series = []
    for run in runs:
        series.append((f"{run['label']} category",
                       [run["by_category"].get(c, {}).get("category_accuracy") for c in categories]))
        series.append((f"{run['label']} action+target",
                       [run["by_category"].get(c, {}).get("action_accuracy") for c in categories]))
        series.append((f"{run['label']} pass", [run["by_category"].get(c, {}).get("pass_rate") for c in categories]))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series):
        ax.bar(x + i * width - 0.4 + width / 2, [100 * (v if v is not None else 0) for v in values], width, label=name)
    counts = {c: max(r["by_category"].get(c, {}).get("cases", 0) for r in runs) for c in categories}
    ax.set_xticks(x, [f"{c}\n(n={counts[c]})" for c in categories])
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of cases")
    ax.set_title("Per expected category (healthy = no-fault controls: pass = stayed quiet)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    if closed_run:
        ax2 = axes[0][1]
        rows = closed_run["closed_loop"]
        ids = [r["case_id"] for r in rows]
        y = np.arange(len(ids))
        h = 0.27
        variants = (("agent", "tab:green"), ("static", "tab:orange"), ("oracle", "tab:blue"))
        for i, (variant, color) in enumerate(variants):
            ax2.barh(y + (i - 1) * h, [r[f"saved_{variant}"] or 0 for r in rows], h, label=variant, color=color)
        ax2.set_yticks(y, ids, fontsize=7)
        ax2.invert_yaxis()
        ax2.axvline(0, color="black", linewidth=0.6)
        ax2.set_xlabel("payments saved vs nobody acting")
        ax2.set_title(f"Closed loop ({closed_run['label']}): agent vs static-threshold alerting vs oracle")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: dict[str, Any], out_dir: Path, gate: list[str] | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / RESULTS_FILE, "report": out_dir / REPORT_FILE, "chart": out_dir / CHART_FILE}
    payload = dict(results)
    if gate is not None:
        payload["gate"] = {"passed": not gate, "failures": gate}
    paths["results"].write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    try:
        chart(results, paths["chart"])
    except ImportError:  # matplotlib is the optional extra payops[eval]; the figures are all in the other two files
        del paths["chart"]
    paths["report"].write_text(markdown(results, gate, with_chart="chart" in paths), encoding="utf-8")
    return paths
