"""The plain metric history and its drawing (common.train.curves, plot_curves)."""

import json

from common.train import plot_curves as command
from common.train.curves import curve_names, plot_curves, read_metrics


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_read_skips_a_truncated_last_line_and_names_fold_eval(tmp_path):
    rows = [{"step": 1, "time": 1.0, "gen/mel": 3.0, "perf/steps_per_s": 1.0},
            {"step": 2, "time": 2.0, "eval/gen/mel": 2.5, "eval/gen/per": 0.9}]
    _write(tmp_path / "metrics.jsonl", rows, tail='{"step": 3, "ti')
    got = read_metrics(tmp_path)
    assert got == rows
    assert curve_names(got) == ["gen/mel", "gen/per"]


def test_plot_against_time_and_the_command(tmp_path, capsys):
    rows = [{"step": s, "time": 30.0 * s, "gen/mel": 3 - s / 10, "eval/gen/mel": 3 - s / 9}
            for s in range(1, 6)]
    out = plot_curves(rows, tmp_path / "t.png", x="time", title="t")
    assert out.read_bytes()[:4] == b"\x89PNG"
    _write(tmp_path / "metrics.jsonl", rows)
    assert command.main([str(tmp_path), "--keys", "gen/mel"]) == 0
    assert (tmp_path / "curves.png").is_file()
    assert command.main([str(tmp_path / "nowhere")]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err
