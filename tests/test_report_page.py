"""The report a scientist opens: per-model table with units, one line per family for the
laws that lack runs, labelled plots without empty figures, fit's exit status; and the
CLIs' --version, --help, -q and -v."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from test_report import _record, synthetic_records, write_results

from mlip_scaling.scaling import plots
from mlip_scaling.scaling.cli import main
from mlip_scaling.scaling.report import fit_records, write_report
from mlip_scaling.scaling.report_page import missing_lines, model_table


def two_models() -> list[dict]:
    """Two transformer sizes trained on the same data, every metric measured."""
    recs = []
    for i, (n, loss) in enumerate([(1240, 0.77), (7010, 0.54)]):
        rec = _record("transformer", i, 0, n, 1000, loss)
        rec["metrics"].update(force_mae=0.05 * loss, md_stability=1.0, relax_failure_rate=0.0,
                              md_drift_se=0.01, new_metric=3.5)
        recs.append(rec)
    return recs


@pytest.fixture()
def two_dir(tmp_path):
    write_results(tmp_path / "scaling_results.json", two_models())
    return tmp_path


def test_two_models_give_one_line_per_family_and_fit_exit_status(two_dir, capsys):
    assert main(["fit", str(two_dir), "--n-perm", "20"]) == 1
    fit_out = capsys.readouterr().out
    assert main(["report", str(two_dir), "--no-evaluate", "--n-perm", "20"]) == 1
    out = capsys.readouterr().out
    assert [x for x in fit_out.splitlines() if x.startswith("transformer: no law")] == [
        x for x in out.splitlines() if x.startswith("transformer: no law")]
    assert "insufficient:" not in out
    lines = [line for line in out.splitlines() if line.startswith("transformer: no law")]
    assert len(lines) == 1
    assert "needs 3 distinct sizes on the parameter axis; have 2" in lines[0]
    assert "needs 3 distinct sizes on the data axis; have 1" in lines[0]
    assert "relaxation failure rate" in lines[0]  # all zero: nothing to fit on a log scale
    page = (two_dir / "report" / "report.html").read_text()
    assert "insufficient:" not in page and page.count("transformer: no law fitted") == 1


def test_models_table_opens_the_page_with_units_and_every_metric(two_dir):
    html_path, _ = write_report(two_dir, two_dir / "r", n_perm=20, quiet=True)
    page = html_path.read_text()
    assert page.index("<h2>Models</h2>") < page.index("<h2>Exponents</h2>")
    for heading in ("force MAE (eV/Å)", "MD stability (fraction)", "N_train", "FLOPs",
                    "NVE energy drift SE (meV/atom/ps)", "new_metric"):
        assert f">{heading}</th>" in page, heading
    header, rows = model_table(two_models(), [])
    assert [r[1] for r in rows] == ["transformer-1240", "transformer-7010"]
    assert rows[0][header.index("N_params")] == "1,240"
    assert rows[1][header.index("force MAE (eV/Å)")] == "0.027"


def test_no_empty_figures_and_stale_ones_removed(two_dir):
    out = two_dir / "r"
    out.mkdir()
    (out / "quality_test_loss.png").write_bytes(b"old")
    write_report(two_dir, out, n_perm=20, quiet=True)
    assert not (out / "quality_test_loss.png").exists()  # no law: nothing to draw
    assert not (out / "relax_failure_rate.png").exists()  # all zero
    assert (out / "test_loss.png").exists() and (out / "frontier_test_loss.png").exists()
    page = (out / "report.html").read_text()
    assert page.count("<svg") == len(list(out.glob("*.svg")))


def _captured_figures(monkeypatch) -> list:
    figures = []

    def save(fig, out, stem):
        fig.canvas.draw()
        figures.append((stem, [(ax.get_xlabel(), ax.get_ylabel(),
                                [t.get_text() for t in ax.get_xticklabels()
                                 if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0]
                                 <= ax.get_xlim()[1]],
                                ax.get_legend_handles_labels()[1]) for ax in fig.axes]))
        return out / f"{stem}.png", out / f"{stem}.svg"

    monkeypatch.setattr(plots, "_save", save)
    return figures


def test_plot_labels_carry_units_ticks_and_plain_legends(two_dir, monkeypatch):
    figures = _captured_figures(monkeypatch)
    rows = fit_records(two_models(), metrics=["force_mae"], n_perm=20)
    plots.plot_metric(rows, "force_mae", two_dir)
    (stem, axes), = figures
    assert stem == "force_mae" and len(axes) == 2  # one size on the data axis: no panel
    xlabel, ylabel, ticks, legend = axes[0]
    assert ylabel == "force MAE (eV/Å)" and xlabel == "parameters N_params"
    assert len(ticks) >= 3  # 1240..7010 lies within one decade
    assert legend == ["transformer: no law (only 2 sizes)"]
    assert not any("insufficient" in label for _, _, _, labels in axes for label in labels)


@pytest.mark.parametrize("lo, hi", [(1240, 7010), (2.1e4, 2.3e4), (0.48, 1.06), (100, 1e3),
                                    (1e3, 1e9)])
def test_log_ticks_fall_inside_any_span(lo, hi):
    ticks = plots.log_ticks(lo, hi)
    assert len(ticks) >= 3
    inside = [t for t in ticks if lo * 0.97 <= t <= hi * 1.03]
    assert len(inside) == len(ticks)
    assert np.all(np.diff(np.log10(ticks)) > 0)


def test_full_grid_lacks_only_the_floor_forms_fifth_size():
    rows = fit_records([r for r in synthetic_records() if r["status"] == "ok"
                        and np.isfinite(r["metrics"]["test_loss"])],
                       metrics=["test_loss"], n_perm=20)
    lines = missing_lines(rows)
    assert [line.split(":")[0] for line in lines] == ["eqv2", "transformer"]
    assert all("the floor form needs 5 runs on the data axis; have 4" in line
               and "distinct sizes" not in line for line in lines)


def _parsers():
    from mlip_scaling.data.cli import _parser as data_parser
    from mlip_scaling.scaling.cli import _parser as scaling_parser
    from mlip_scaling.training.cli import build_parser

    return {"mlip-scaling": scaling_parser(), "mlip-data": data_parser(),
            "mlip-train": build_parser()}


def _actions(parser, name):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _actions(sub, f"{name} {sub_name}")
        else:
            yield name, parser, action


def _commands(parser, name):
    """The parsers that run a command (subcommands, or the parser itself without any)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
    for action in subs:
        for sub_name, sub in action.choices.items():
            yield from _commands(sub, f"{name} {sub_name}")


def test_help_on_every_flag_and_the_default_stated_once():
    seen = 0
    for prog, parser in _parsers().items():
        for name, owner, action in _actions(parser, prog):
            seen += 1
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            text = owner._get_formatter()._expand_help(action)
            assert len(re.findall(r"\(default|\bdefault\s*[:=]", text, re.I)) <= 1, text
            assert "(default: None)" not in text and "(default: False)" not in text
    assert seen > 100


def test_version_quiet_and_verbose_everywhere(two_dir, capsys):
    from mlip_scaling import __version__
    from mlip_scaling.data.cli import main as data_main
    from mlip_scaling.training.cli import main as train_main

    for entry in (main, data_main, train_main):
        with pytest.raises(SystemExit) as exc:
            entry(["--version"])
        assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    for prog, parser in _parsers().items():
        for name, command in _commands(parser, prog):
            assert {"-q", "--quiet", "-v", "--verbose"} <= set(command._option_string_actions), name
    assert main(["fit", str(two_dir), "--n-perm", "20", "-q"]) == 1
    assert capsys.readouterr().out == ""
    assert main(["fit", str(two_dir), "--n-perm", "20", "-v"]) == 1
    captured = capsys.readouterr()
    assert "insufficient:" in captured.out and "done in" in captured.err


def test_train_output_flags_are_not_config_and_reach_the_run(monkeypatch, capsys):
    from mlip_scaling.training import runner
    from mlip_scaling.training.cli import main as train_main
    from mlip_scaling.training.cli import parse_config

    assert parse_config(["-q", "-vv", "--epochs", "2"]).epochs == 2
    seen = []
    monkeypatch.setattr(runner, "run_training", lambda cfg, verbose=True: seen.append(verbose))
    assert train_main(["--epochs", "2", "-q"]) == 0
    assert train_main(["--epochs", "2", "-v"]) == 0
    assert seen == [False, True]
    err = capsys.readouterr().err
    assert '"epochs": 2' in err and "done in" in err
