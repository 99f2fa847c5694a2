"""What the report shows: the per-model table, the exponent table, one line per family for
the laws that could not be fitted for lack of runs, and the HTML page holding them.

Shared by the terminal output and ``report.html``; every metric heading (label, unit,
definition) comes from :mod:`mlip_scaling.scaling.metrics`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mlip_scaling.scaling.fit import NEEDED
from mlip_scaling.scaling.metrics import REGISTRY, metric
from mlip_scaling.scaling.slices import finite

__all__ = ["model_metrics", "model_table", "missing_lines", "no_floor_lines", "fit_table",
           "slice_text", "p_text", "page", "FIT_COLUMNS", "BORDERLINE", "is_borderline",
           "ALLOCATION_COLUMNS", "allocation_section", "mde_text"]

_EXPONENT = {"power": "beta", "floor": "b"}
_AXIS_WORDS = {"data": "the data axis", "params": "the parameter axis",
               "compute": "the compute frontier", "joint": "both axes"}
_FORM_WORDS = {"power": "a power law", "floor": "the floor form", "joint": "the joint law",
               "broken": "the broken power law"}
#: trend-test p-values in this open range decide near the 0.05 threshold: such a cell may
#: flip between an exponent and none on another machine or rerun (marked "borderline")
BORDERLINE = (0.01, 0.1)
FIT_COLUMNS = ("family", "metric", "axis", "fitted slice", "form", "exponent", "95 % CI",
               "p (trend)", "p (curvature)", "min. detectable", "R²", "extrap. error",
               "status")
_WARNINGS = {
    "curvature": "WARNING: the log-log plot bends (curvature test p={p_curv:.2g}); one power "
                 "law misdescribes these sizes and its extrapolation is unsafe (see the "
                 "broken and floor forms)",
    "extrapolation": "WARNING: the largest size lies further from the law fitted without it "
                     "than the noise explains (p={p_extrap:.2g})"}
#: appended to a curvature warning or a broken-law row fitted without standard errors
NO_SE_CAVEAT = ("no standard errors recorded: the curvature and break tests assume equal "
                "noise at every size; where the noise falls along the axis they also fire on "
                "true power laws (docs/fits.md, unequal noise without SEs)")
ALLOCATION_COLUMNS = ("budget C (FLOP)", "N_opt (parameters)", "95 % CI", "D_opt (structures)",
                      "95 % CI", "expected test loss", "95 % CI", "")
_MDE_NOTE = ("min. detectable: the smallest exponent this design (its sizes and residual "
             "scatter) detects with power 0.8 at α = 0.05 (a and b: partial slopes on log N "
             "and log D); smaller true exponents are usually not reported.")


def _num(value, fmt: str = "{:.3g}") -> str:
    return fmt.format(value) if finite(value) else ""


def _count(value) -> str:
    """A count: '7,010' below a million, '1.25e+06' above."""
    if not finite(value):
        return ""
    return f"{value:,.0f}" if abs(value) < 1e6 and value == int(value) else f"{value:.3g}"


def model_metrics(records: list[dict], oracle: bool = False) -> list[str]:
    """Metric names measured on at least one model, registry order first, then unknown
    names sorted; reference-run (oracle) properties only with ``oracle``."""
    seen = {k for r in records for k, v in (r.get("metrics") or {}).items() if finite(v)}
    known = [m for m in REGISTRY if m in seen and (oracle or not REGISTRY[m].oracle)]
    return known + sorted(seen - set(REGISTRY))


def model_table(records: list[dict], excluded: list[tuple[dict, str]]
                ) -> tuple[list[str], list[list[str]]]:
    """(header, rows): family, model, N_params, N_train, FLOPs and every measured metric
    (with units) of each run, sorted by family, size and data; excluded runs say why."""
    names = model_metrics(records)
    why = {id(rec): reason for rec, reason in excluded}
    header = ["family", "model", "N_params", "N_train", "FLOPs",
              *[metric(m).heading() for m in names], "note"]

    def key(r: dict) -> tuple:
        return (str(r.get("family") or "?"), r.get("n_params") or 0, r.get("n_train") or 0,
                str(r.get("checkpoint")))

    rows = []
    for r in sorted(records, key=key):
        values = r.get("metrics") or {}
        rows.append([str(r.get("family") or "?"), str(r.get("model") or ""),
                     _count(r.get("n_params")), _count(r.get("n_train")),
                     _num(r.get("flops")), *[_num(values.get(m), "{:.4g}") for m in names],
                     why.get(id(r), "")])
    return header, rows


def _missing_part(axis: str, form: str, group: list[dict], power_short: bool) -> str:
    """'needs 3 distinct sizes on the data axis; have 2 (14 metrics)': the shortfall of
    the group's fits (the best-covered of those short, when metrics differ)."""
    sizes, points = NEEDED[form]
    short_sizes = [r["n_sizes"] for r in group if r["n_sizes"] < sizes]
    short_points = [r.get("n_cells", r["n_points"]) for r in group
                    if r.get("n_cells", r["n_points"]) < points
                    ] if form != "power" else []  # power: as many points as sizes needed
    wants = ([f"{sizes} distinct sizes"] if short_sizes else []) + (
        [f"{points} runs"] if short_points else [])
    haves = [str(max(v)) for v in (short_sizes, short_points) if v]
    what = "" if form == "power" or (form == "floor" and power_short) else (
        f"{_FORM_WORDS[form]} ")
    n = len({r["metric"] for r in group})
    return (f"{what}needs {' and '.join(wants)} on {_AXIS_WORDS[axis]}; have "
            f"{' and '.join(haves)} ({n} metric{'s' if n > 1 else ''})")


def missing_lines(rows: list[dict]) -> list[str]:
    """One line per family naming what the 'insufficient' fits lack, axis by axis (and the
    metrics with no positive value to fit on a log scale at all)."""
    lines = []
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family]
        empty = [m for m in dict.fromkeys(r["metric"] for r in mine)
                 if all(r["n_points"] == 0 for r in mine if r["metric"] == m)]
        short = [r for r in mine if r["status"] == "insufficient" and r["metric"] not in empty]
        parts = []
        for axis in ("data", "params", "compute", "joint"):
            on_axis = [r for r in short if r["axis"] == axis]
            power = [r for r in on_axis if r["form"] == "power"]
            for form in ("power", "floor", "joint"):  # the broken form is optional
                group = [r for r in on_axis if r["form"] == form]
                if group and not (form == "floor" and power):
                    parts.append(_missing_part(axis, form, group, bool(power)))
        text = f"no law fitted where the runs are too few: {'; '.join(parts)}" if parts else ""
        if empty:
            text += ("; " if text else "") + (
                f"no law fitted for {', '.join(metric(m).label for m in empty)}: no positive "
                "value to fit on a log scale")
        if text:
            lines.append(f"{family}: {text}")
    return lines


def no_floor_lines(rows: list[dict]) -> list[str]:
    """One line per family for the floor-form fits that were tried and not kept."""
    lines = []
    for family in sorted({r["family"] for r in rows}):
        dropped = [r for r in rows if r["family"] == family and r["form"] == "floor"
                   and r["status"] not in ("ok", "insufficient")]
        if dropped:
            axes = ", ".join(dict.fromkeys(_AXIS_WORDS[r["axis"]] for r in dropped))
            lines.append(f"{family}: no floor kept in {len(dropped)} floor-form fit(s) on "
                         f"{axes} (E + A·N^-b not better than the pure power law, or not "
                         "identifiable; reasons in fits.csv)")
    return lines


def slice_text(row: dict) -> str:
    """The fitted slice in words: 'n_params=6.4e+04 (largest complete slice)'."""
    desc = row.get("slice") or {}
    text = desc.get("rule", "")
    if desc.get("fixed") and desc.get("value") is not None:
        text = f"{desc['fixed']}={desc['value']:.3g} ({text})"
    if desc.get("missing"):
        text += f"; {len(desc['missing'])} run(s) without this metric"
    return text


def is_borderline(p: float | None) -> bool:
    """Whether the trend test's ``p`` lies in :data:`BORDERLINE`."""
    return p is not None and BORDERLINE[0] < p < BORDERLINE[1]


def p_text(row: dict) -> str:
    """Trend-test p-value (marked when borderline), and the floor test's or the permutation
    null's when present."""
    p = row.get("p_trend")
    parts = ["—" if p is None else f"{p:.2g}" + (" borderline" if is_borderline(p) else "")]
    if row.get("p_floor") is not None:
        parts.append(f"floor {row['p_floor']:.2g}")
    if row.get("p_break") is not None:
        parts.append(f"break {row['p_break']:.2g}")
    if row.get("p_perm") is not None and row.get("p_perm") != row.get("p_trend"):
        parts.append(f"perm {row['p_perm']:.2g}")
    return ", ".join(parts)


def _fmt_exponent(r: dict) -> tuple[str, str]:
    if not r["params"]:
        return "—", ""
    p, ci = r["params"], r["ci"]
    if r["status"] == "collinear":
        return (f"β={p['beta']:.3f} along the runs (D ∝ N^{p['k']:.2f})",
                f"[{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}]")
    if r["form"] == "broken":
        return (f"b1={p['b1']:.3f} b2={p['b2']:.3f} N_b={p['Nb']:.3g}",
                f"b1 [{ci['b1'][0]:.3f}, {ci['b1'][1]:.3f}] b2 [{ci['b2'][0]:.3f}, "
                f"{ci['b2'][1]:.3f}] N_b [{ci['Nb'][0]:.3g}, {ci['Nb'][1]:.3g}]")
    if r["form"] == "joint":
        p, ci = r["params"], r["ci"]
        return (f"a={p['a']:.3f} b={p['b']:.3f}",
                f"a [{ci['a'][0]:.3f}, {ci['a'][1]:.3f}] b [{ci['b'][0]:.3f}, {ci['b'][1]:.3f}]")
    key = _EXPONENT[r["form"]]
    return f"{r['params'][key]:.3f}", f"[{r['ci'][key][0]:.3f}, {r['ci'][key][1]:.3f}]"


def mde_text(r: dict) -> str:
    """The row's minimal detectable exponent (``a=…, b=…`` for the joint law)."""
    mde = r.get("mde")
    if isinstance(mde, dict):
        return ", ".join(f"{k}={v:.3g}" for k, v in mde.items())
    return f"{mde:.3g}" if finite(mde) else ""


def _status_text(r: dict) -> str:
    text = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
    if r["status"] == "ok" and r.get("indicative"):
        text = f"ok, indicative ({r.get('n_sizes')} sizes)"
    if r["status"] == "ok" and r["reason"]:
        text += f"; {r['reason']}"
    if r["status"] == "ok" and r.get("weighting") not in (None, "", "unweighted"):
        text += f"; {r['weighting']}"
    if r.get("convergence"):
        text += f"; {r['convergence']}"
    for flag in r.get("flags") or []:
        text += "; " + _WARNINGS[flag].format(**r)
    no_se = "standard errors" not in (r.get("weighting") or "")
    if no_se and r["status"] == "ok" and ("curvature" in (r.get("flags") or [])
                                         or r["form"] == "broken"):
        text += "; " + NO_SE_CAVEAT
    return text


def warning_count(rows: list[dict]) -> int:
    """Number of fitted rows carrying a warning flag."""
    return sum(1 for r in rows if r["status"] == "ok" and r.get("flags"))


def _extrap_text(r: dict) -> str:
    if r["extrapolation_error"] is None:
        return ""
    text = f"{100 * r['extrapolation_error']:.1f} %"
    return text + (f" (p={r['p_extrap']:.2g})" if r.get("p_extrap") is not None else "")


def fit_table(rows: list[dict]) -> list[list[str]]:
    """Cells of the exponent table, one row per fit (columns :data:`FIT_COLUMNS`)."""
    out = []
    for r in rows:
        exp_, ci = _fmt_exponent(r)
        out.append([r["family"], metric(r["metric"]).heading(), r["axis"], slice_text(r),
                    r["form"], exp_, ci, p_text(r), _num(r.get("p_curv"), "{:.2g}"),
                    mde_text(r), f"{r['r2']:.3f}" if r["r2"] is not None else "",
                    _extrap_text(r), _status_text(r)])
    return out


_STYLE = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 8px}"
          "table{border-collapse:collapse;font-size:13px;margin-bottom:8px}"
          "td,th{border:1px solid #ccc;padding:3px 6px}th{background:#f2f2f2}"
          "td.n{text-align:right;white-space:nowrap}svg{max-width:100%;height:auto}"
          ".note{color:#555}.warn{color:#a00;font-weight:bold}.wide{overflow-x:auto}"
          ".models td{white-space:nowrap}")
_INTRO = ("Laws: L = α·N^−β (log-log least squares; solid, 95 % t-band) and L = E + A·N^−b "
          "(least squares of log residuals; dashed, 95 % profile-likelihood band). An exponent "
          "is given only where the test against no dependence rejects at 5 % (p in the table), "
          "a floor (or a break) only where it beats the pure power law; 'indicative' rows have "
          "<= 4 sizes. Seeds at one size are averaged first (the fit is on per-size means, "
          "so errors shared by a size's seeds are in the intervals), weighted by inverse "
          "variance where standard errors are recorded. p (curvature): quadratic term in "
          "log-log; extrap. error: the largest size predicted without it, p against the "
          "noise. "
          "Data and parameter axes use the largest complete slice (the fitted slice is in each "
          "row); the compute frontier is chosen by test loss and compared with a permutation "
          "null.")


def _table(header: list[str], rows: list[list[str]], titles: list[str] | None = None,
           numeric_from: int = 99, css: str = "") -> str:
    esc = html.escape
    titles = titles or [""] * len(header)
    head = "".join(f"<th title='{esc(t)}'>{esc(h)}</th>" if t else f"<th>{esc(h)}</th>"
                   for h, t in zip(header, titles))
    body = ["<tr>" + "".join(f"<td class='n'>{esc(c)}</td>" if numeric_from <= i < len(cells) - 1
                             else f"<td>{esc(c)}</td>" for i, c in enumerate(cells)) + "</tr>"
            for cells in rows]
    return (f"<div class='wide'><table class='{css}'><tr>{head}</tr>" + "".join(body)
            + "</table></div>")


def _inline_svg(path: Path) -> str:
    text = path.read_text()
    return re.sub(r"^.*?(?=<svg)", "", text, count=1, flags=re.S)


def allocation_section(found: dict[str, dict]) -> str:
    """HTML of the compute-optimal allocation per family (or why it is not fitted)."""
    from mlip_scaling.scaling.allocation import allocation_lines

    parts = ["<h2>Compute-optimal allocation (test loss)</h2>"]
    for family, result in found.items():
        head, cells = allocation_lines(result)
        parts.append(f"<p><b>{html.escape(family)}</b>: {html.escape(head)}</p>")
        if cells:
            parts.append(_table(list(ALLOCATION_COLUMNS), cells, numeric_from=0))
    parts.append("<p class='note'>For a budget of C FLOP: about N_opt parameters on D_opt "
                 "training structures (same training protocol as the runs), expected loss "
                 "L; from the joint law and the runs' measured FLOPs (Chinchilla approach "
                 "3), 95 % intervals from bootstrap refits from scratch.</p>")
    return "\n".join(parts)


def page(records: list[dict], usable: list[dict], rows: list[dict],
         excluded: list[tuple[dict, str]], figures: list[tuple[str, Path, Path]],
         allocation: str = "") -> str:
    """The report's HTML: per-model table, exponent table (fitted and untestable laws; the
    'insufficient' ones as one line per family), the compute-optimal allocation section
    (HTML given), metric definitions, figures, exclusions."""
    esc = html.escape
    families = sorted({str(r.get("family") or "?") for r in usable})
    header, model_rows = model_table(records, excluded)
    names = model_metrics(records)
    titles = ["", "", "parameters", "training structures", "training compute (FLOP)",
              *[metric(m).definition for m in names], ""]
    shown = [r for r in rows if r["status"] != "insufficient"
             and (r["form"] not in ("floor", "broken") or r["status"] == "ok")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mlip-scaling report"
             f"</title><style>{_STYLE}</style></head><body>", "<h1>Scaling report</h1>",
             f"<p>{len(usable)} runs used ({esc(', '.join(families))}); {len(excluded)} "
             "exclusions (in the table's note column and at the end).</p>",
             "<h2>Models</h2>", _table(header, model_rows, titles, numeric_from=2, css="models"),
             "<h2>Exponents</h2>"]
    parts.append(_table(list(FIT_COLUMNS), fit_table(shown)) if shown
                 else "<p>No law could be tested on these runs.</p>")
    if warning_count(shown):
        parts.append(f"<p class='warn'>{warning_count(shown)} fitted row(s) carry a warning "
                     "(curvature or extrapolation; in the status column).</p>")
    parts += [f"<p class='note'>{esc(line)}</p>"
              for line in missing_lines(rows) + no_floor_lines(rows)]
    parts.append(f"<p class='note'>{esc(_MDE_NOTE)}</p>{allocation}")
    parts.append(f"<p class='note'>{esc(_INTRO)}</p><h2>Metrics</h2><ul>")
    parts += [f"<li><b>{esc(metric(m).heading())}</b>: {esc(metric(m).definition)}"
              f"{'' if metric(m).lower_is_better else ' (higher is better)'}"
              f"{'' if metric(m).fitted else esc(f'; not fitted: {metric(m).not_fitted}')}</li>"
              for m in names]
    parts.append("</ul>")
    for title, _png, svg in figures:
        parts.append(f"<h2>{esc(title)}</h2>{_inline_svg(svg)}")
    parts.append("<h2>Excluded runs</h2><ul>")
    parts += [f"<li>{esc(str(rec.get('checkpoint')))}: {esc(why)}</li>"
              for rec, why in excluded] or ["<li>none</li>"]
    parts.append("</ul></body></html>")
    return "\n".join(parts)
