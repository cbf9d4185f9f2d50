"""Presets, file and command-line overrides, dict/JSON round trips of typed configs."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from common.config import (
    ConfigError,
    apply_overrides,
    coerce_values,
    config_from_dict,
    config_hash,
    config_to_dict,
    format_config,
    load_config,
    parse_config,
    read_config_file,
    replace_path,
    save_config,
)


class Norm(enum.Enum):
    RMS = "rms"
    LAYER = "layer"


@dataclasses.dataclass(frozen=True)
class Model:
    dim: int = 8
    layers: int = 2
    act: Literal["relu", "gelu"] = "relu"
    norm: Norm = Norm.RMS

    def __post_init__(self):
        if self.dim % 2:
            raise ValueError(f"dim must be even, got {self.dim}")


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    schedule: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Ema:
    decay: float = 0.999


@dataclasses.dataclass(frozen=True)
class Top:
    """A test config."""

    model: Model = Model()
    optim: Optim = Optim()
    name: str = "run"
    steps: int = 10
    seed: int | None = None
    bf16: bool = False
    dtype: str = "float32"
    ema: Ema | None = None


PRESETS = {
    "tiny": Top(),
    "small": Top(model=Model(dim=64, layers=4), optim=Optim(lr=3e-4), name="small", steps=1000,
                 ema=Ema()),
}


def parse(*argv):
    return parse_config(Top, PRESETS, list(argv))


def test_preset_selection():
    assert parse() == PRESETS["tiny"]
    assert parse("--preset", "small") == PRESETS["small"]
    assert parse("--preset=small") == PRESETS["small"]


def test_unknown_preset_lists_choices(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--preset", "huge")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "huge" in err and "tiny" in err and "small" in err


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_file_overrides_preset_and_cli_overrides_file(tmp_path, fmt):
    overrides = {"model": {"dim": 32}, "optim": {"betas": [0.8, 0.9]}, "steps": 5}
    path = tmp_path / f"over.{fmt}"
    if fmt == "yaml":
        path.write_text("model:\n  dim: 32\noptim:\n  betas: [0.8, 0.9]\nsteps: 5\n")
    else:
        path.write_text(json.dumps(overrides))
    cfg = parse("--preset", "small", "--config", str(path))
    # The file changes only what it names; the rest comes from the preset.
    assert cfg.model == Model(dim=32, layers=4)
    assert cfg.optim == Optim(lr=3e-4, betas=(0.8, 0.9))
    assert (cfg.steps, cfg.name) == (5, "small")
    cfg = parse("--config", str(path), "--preset", "small", "--model.dim", "16", "--steps", "7")
    assert (cfg.model.dim, cfg.model.layers, cfg.steps, cfg.optim.betas) == (16, 4, 7, (0.8, 0.9))


def test_yaml_float_without_dot_and_dotted_keys(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("optim.lr: 1e-3\nmodel.act: gelu\n")  # YAML 1.1 reads 1e-3 as a string
    cfg = parse("--preset", "small", "--config", str(path))
    assert cfg.optim.lr == 1e-3 and cfg.model.act == "gelu" and cfg.model.dim == 64


def test_cli_dotted_bools_tuples_none_literals_enums():
    cfg = parse(
        "--model.dim", "64", "--model.act", "gelu", "--model.norm", "LAYER",
        "--optim.lr", "1e-2", "--optim.betas", "0.5", "0.6", "--optim.schedule", "1", "2", "3",
        "--seed", "3", "--bf16", "--name", "x",
    )
    assert cfg.model == Model(dim=64, act="gelu", norm=Norm.LAYER)
    assert cfg.optim == Optim(lr=1e-2, betas=(0.5, 0.6), schedule=(1, 2, 3))
    assert (cfg.seed, cfg.bf16, cfg.name) == (3, True, "x")
    assert isinstance(cfg.optim.betas, tuple)
    cfg = parse("--bf16", "--no-bf16", "--seed", "None")
    assert cfg.bf16 is False and cfg.seed is None


def test_optional_sections(tmp_path):
    # A section that is set in the preset takes dotted flags like any other.
    assert parse("--preset", "small", "--ema.decay", "0.9").ema == Ema(0.9)
    # Switching one on or off goes through the file.
    on, off = tmp_path / "on.yaml", tmp_path / "off.yaml"
    on.write_text("ema:\n  decay: 0.5\n")
    off.write_text("ema: null\n")
    assert parse("--config", str(on)).ema == Ema(0.5)
    assert parse("--config", str(on), "--ema.decay", "0.7").ema == Ema(0.7)
    assert parse("--preset", "small", "--config", str(off)).ema is None
    assert config_from_dict(Top, config_to_dict(PRESETS["small"])) == PRESETS["small"]


def test_unknown_cli_field_exits_2_naming_it(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--model.dimm", "3")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--model.dimm" in err
    assert "--model.dim" in err.replace("--model.dimm", "")  # the suggestion


@pytest.mark.parametrize("argv", [["--model.dim", "abc"], ["--optim.betas", "0.1"]])
def test_bad_cli_value_exits_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_bad_cli_literal_lists_allowed_values(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--model.act", "tanh")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "tanh" in err and "relu" in err and "gelu" in err and "--model.act" in err


def test_post_init_error_on_cli_is_clean(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--model.dim", "7")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "dim must be even, got 7" in err and "model" in err
    assert "Traceback" not in err


def test_unknown_key_in_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  dimm: 32\n")
    with pytest.raises(ConfigError, match=r"model\.dimm.*did you mean 'model\.dim'"):
        apply_overrides(PRESETS["tiny"], read_config_file(path))
    with pytest.raises(ConfigError, match=r"model\.dimm"):
        load_config(Top, path)
    with pytest.raises(SystemExit) as e:
        parse("--config", str(path))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "model.dimm" in err and str(path) in err


def test_bad_values_in_file_name_the_field():
    tiny = PRESETS["tiny"]
    with pytest.raises(ConfigError, match=r"model\.act.*'tanh'.*'relu', 'gelu'"):
        apply_overrides(tiny, {"model": {"act": "tanh"}})
    with pytest.raises(ConfigError, match=r"steps.*'ten'"):
        apply_overrides(tiny, {"steps": "ten"})
    with pytest.raises(ConfigError, match=r"bf16"):
        apply_overrides(tiny, {"bf16": "yes"})
    with pytest.raises(ConfigError, match=r"optim\.betas.*2 values"):
        apply_overrides(tiny, {"optim": {"betas": [0.1]}})
    with pytest.raises(ConfigError, match=r"model\.norm.*'RMS', 'LAYER'"):
        apply_overrides(tiny, {"model": {"norm": "batch"}})
    with pytest.raises(ConfigError, match=r"model: dim must be even, got 9"):
        apply_overrides(tiny, {"model": {"dim": 9}})
    with pytest.raises(ConfigError, match=r"model: dim must be even, got 9"):
        config_from_dict(Top, {"model": {"dim": 9}})


def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_config(Top, path)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(Top, tmp_path / "missing.yaml")


def test_dict_round_trip():
    cfg = replace_path(PRESETS["small"], "optim.schedule", (10, 20))
    cfg = dataclasses.replace(cfg, seed=4, model=Model(norm=Norm.LAYER))
    d = config_to_dict(cfg)
    assert d["optim"]["betas"] == [0.9, 0.99] and d["model"]["norm"] == "layer"
    json.dumps(d, allow_nan=False)  # JSON-safe
    back = config_from_dict(Top, d)
    assert back == cfg and isinstance(back.optim.betas, tuple)
    # Missing keys take defaults; unknown keys fail or are skipped when not strict.
    assert config_from_dict(Top, {"model": {"dim": 4}}) == Top(model=Model(dim=4))
    with pytest.raises(ConfigError, match=r"model\.extra"):
        config_from_dict(Top, {"model": {"extra": 1}})
    assert config_from_dict(Top, {"model": {"extra": 1}}, strict=False) == Top()


F32 = np.dtype("float32")


@dataclasses.dataclass(frozen=True)
class WithDtype:
    dtype: np.dtype = F32
    scalar: type = np.float16


def test_dtypes_become_strings():
    d = config_to_dict(WithDtype())
    assert d == {"dtype": "float32", "scalar": "float16"}
    assert config_from_dict(WithDtype, {"dtype": "float16"}).dtype == (
        np.dtype("float16")
    )


def test_save_load_round_trip(tmp_path):
    cfg = replace_path(PRESETS["small"], "seed", 11)
    path = tmp_path / "run" / "config.json"
    save_config(cfg, path)
    text = path.read_text()
    assert text.startswith("{\n  ") and list(json.loads(text)) == sorted(json.loads(text))
    assert load_config(Top, path) == cfg
    # A saved config doubles as an override file.
    assert parse("--config", str(path)) == cfg


def test_replace_path():
    cfg = PRESETS["tiny"]
    new = replace_path(cfg, "model.dim", 64)
    assert new.model.dim == 64 and cfg.model.dim == 8 and new.optim is cfg.optim
    assert replace_path(cfg, "optim.betas", [0.1, 0.2]).optim.betas == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"model\.width"):
        replace_path(cfg, "model.width", 1)
    with pytest.raises(ConfigError, match=r"model\.dim"):
        replace_path(cfg, "model.dim", "big")


def test_format_config():
    text = format_config(PRESETS["small"])
    assert text.splitlines()[0].startswith("Top (hash ")
    assert any(line.split() == ["model.dim", "64"] for line in text.splitlines())
    assert any(line.split() == ["optim.betas", "[0.9,", "0.99]"] for line in text.splitlines())


def test_config_hash_stable_and_sensitive():
    h = config_hash(PRESETS["small"])
    assert h == "5f70518c13"  # pinned: hashes of saved runs must stay comparable
    assert h == config_hash(Top(model=Model(dim=64, layers=4), optim=Optim(lr=3e-4),
                                name="small", steps=1000, ema=Ema(0.999)))
    assert h != config_hash(replace_path(PRESETS["small"], "model.layers", 5))
    # Stable across processes (no per-process hash seeds).
    code = (
        "from tests.common.test_config import PRESETS;"
        "from common.config import config_hash;"
        "print(config_hash(PRESETS['small']))"
    )
    env = {"PYTHONHASHSEED": "123", "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2], env=env)
    assert out.stdout.strip() == h


def test_help_shows_preset_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--preset", "small", "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--model.dim" in out and "64" in out and "--preset" in out and "small" in out


def test_aliases_expand_to_dotted_fields(capsys):
    aliases = {"--width": "--model.dim", "--half": "--bf16"}
    cfg = parse_config(Top, PRESETS, ["--width", "16", "--half"], aliases=aliases)
    assert cfg.model.dim == 16 and cfg.bf16
    assert parse_config(Top, PRESETS, ["--width=32"], aliases=aliases).model.dim == 32
    with pytest.raises(SystemExit):
        parse_config(Top, PRESETS, ["--help"], aliases=aliases)
    assert "--width = --model.dim" in capsys.readouterr().out


@dataclasses.dataclass(frozen=True)
class Warmup:
    warmup_steps: int = 0
    peak_lr: float = 1e-3


@dataclasses.dataclass(frozen=True)
class Schedule:
    lr_warmup: Warmup = Warmup()
    milestones: tuple[int, ...] = ()


def test_hyphenated_and_dotted_keys_as_tyro_spells_them():
    want = Schedule(lr_warmup=Warmup(warmup_steps=5, peak_lr=0.01))
    assert config_from_dict(Schedule, {"lr-warmup.warmup-steps": 5,
                                       "lr_warmup": {"peak-lr": "1e-2"}}) == want
    assert apply_overrides(Schedule(), {"lr-warmup": {"warmup-steps": 5, "peak_lr": 0.01}}) == want
    with pytest.raises(ConfigError, match=r"unknown field 'lr_warmup\.warmup-stepz'.*"
                                          r"did you mean 'lr_warmup\.warmup_steps'"):
        apply_overrides(Schedule(), {"lr-warmup.warmup-stepz": 5})


def test_bad_item_names_the_field_and_type():
    with pytest.raises(ConfigError, match=r"milestones: invalid value .*expected tuple\[int, "):
        config_from_dict(Schedule, {"milestones": [1, "a"]})
    with pytest.raises(ConfigError, match=r"milestones: invalid value 'abc'"):
        config_from_dict(Schedule, {"milestones": "abc"})


def test_coerce_values_from_command_line_strings():
    types = {"n": int, "x": float | None, "on": bool, "act": Literal["relu", "gelu"],
             "norm": Norm, "sizes": tuple[int, ...], "path": Path, "model": Model}
    got = coerce_values(types, {"n": "3", "x": "none", "on": "yes", "act": "gelu",
                                "norm": "layer", "sizes": "1, 2", "path": "/a",
                                "model": {"dim": 4}, "untyped": "s"}, from_text=True)
    assert got == {"n": 3, "x": None, "on": True, "act": "gelu", "norm": Norm.LAYER,
                   "sizes": (1, 2), "path": Path("/a"), "model": Model(dim=4), "untyped": "s"}
    assert coerce_values(types, {"x": "0.5", "sizes": ""}, from_text=True) == {
        "x": 0.5, "sizes": ()}
    with pytest.raises(ConfigError, match=r"^n: invalid value 'many', expected int$") as e:
        coerce_values(types, {"n": "many"}, from_text=True)
    assert (e.value.field, e.value.reason) == ("n", "expected int")
    with pytest.raises(ConfigError) as e:
        coerce_values(types, {"act": "tanh"}, from_text=True)
    assert (e.value.field, e.value.reason) == ("act", "allowed values: 'relu', 'gelu'")
    with pytest.raises(ConfigError, match=r"on: invalid value 'maybe', expected bool"):
        coerce_values(types, {"on": "maybe"}, from_text=True)
    with pytest.raises(ConfigError, match=r"model: dim must be even, got 3"):
        coerce_values(types, {"model": {"dim": 3}})
    with pytest.raises(ConfigError, match="'n-mels' is not a valid name"):
        coerce_values(types, {"n-mels": "3"}, from_text=True)
    # Without from_text, strings are not parsed (as in config files).
    with pytest.raises(ConfigError, match=r"n: invalid value '3', expected int"):
        coerce_values(types, {"n": "3"})


def test_usage_names_the_module_run_with_dash_m(monkeypatch, capsys):
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="tokenizer.alpha.train")
    monkeypatch.setitem(sys.modules, "__main__", main)
    with pytest.raises(SystemExit):
        parse("--help")
    assert "usage: python -m tokenizer.alpha.train" in capsys.readouterr().out


@dataclasses.dataclass(frozen=True)
class Paths:
    root: Path = Path("/data")
    dtype: np.dtype = F32
    norm: Norm = Norm.RMS
    sizes: list[int] = dataclasses.field(default_factory=list)


def test_conversions_and_their_errors_name_the_field():
    got = config_from_dict(Paths, {"root": "/x", "dtype": "float16", "norm": "LAYER",
                                   "sizes": (1, 2)})
    assert got == Paths(Path("/x"), np.dtype("float16"), Norm.LAYER, [1, 2])
    assert config_from_dict(Paths, {"norm": "layer"}).norm is Norm.LAYER  # value or name
    for key, value in [("root", 3), ("dtype", "nope"), ("sizes", "12")]:
        with pytest.raises(ConfigError, match=rf"^{key}: invalid value {value!r}"):
            config_from_dict(Paths, {key: value})
    with pytest.raises(ConfigError, match=r"steps: invalid value True, expected int"):
        apply_overrides(PRESETS["tiny"], {"steps": True})  # a bool is no int to a config
    with pytest.raises(ConfigError, match=r"model: given more than once"):
        apply_overrides(PRESETS["tiny"], {"model": Model(), "model.dim": 4})
    loose = apply_overrides(PRESETS["small"], {"model.dimm": 1, "ema.decay": 0.5}, strict=False)
    assert loose.ema == Ema(0.5) and loose.model == PRESETS["small"].model
