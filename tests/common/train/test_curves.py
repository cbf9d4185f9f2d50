"""The plain metric history and its drawing (common.train.curves, plot_curves)."""

import json

from common.train import plot_curves as command
from common.train.curves import curve_panels, plot_curves, read_metrics


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_panels_join_eval_to_training_and_drop_flat_series(tmp_path):
    rows = [{"step": 1, "time": 1.0, "gen/mel": 3.0, "gen/flat": 1.0, "perf/steps_per_s": 1.0},
            {"step": 2, "time": 2.0, "gen/mel": 2.8, "gen/flat": 1.0, "eval/mel": 2.5,
             "eval/per": 0.9},
            {"step": 3, "time": 3.0, "eval/mel": 2.4, "eval/per": 0.8}]
    _write(tmp_path / "metrics.jsonl", rows, tail='{"step": 4, "ti')
    got = read_metrics(tmp_path)
    assert got == rows  # the truncated last line (a killed run) is left out
    # a GAN's eval names its metrics without the generator's prefix: joined by suffix
    assert curve_panels(got) == {"gen/mel": ["gen/mel", "eval/mel"], "per": ["eval/per"]}
    assert curve_panels(got, keys=["gen/flat"]) == {"gen/flat": ["gen/flat"]}


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
