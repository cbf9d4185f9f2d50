"""Typed run configs: named presets, overrides from a YAML/JSON file and the command line.

A config is a frozen (possibly nested) dataclass. ``parse_config`` picks a preset
(``--preset NAME``), applies a file of overrides on top (``--config PATH``), then
hands the result to tyro as the default, so every field can be overridden with its
dotted name (``--model.dim 64 --optim.lr 1e-3``) and ``--help`` shows the values the
run will actually use. The dict helpers give the JSON form saved next to checkpoints.

Invalid input fails at once with the dotted field name: tyro exits with code 2 on the
command line, the file and dict loaders raise ``ConfigError``.

``cli``: ``parse_config``; ``convert``: mappings <-> dataclasses through dacite (also
``coerce_values`` for other typed arguments, e.g. feature extractors'); ``files``: YAML/JSON
files, the printed form and the hash.
"""


from common.config.cli import parse_config
from common.config.convert import (
    ConfigError,
    apply_overrides,
    coerce_values,
    config_from_dict,
    config_to_dict,
    replace_path,
)
from common.config.files import (
    config_hash,
    format_config,
    load_config,
    read_config_file,
    save_config,
)

__all__ = [
    "ConfigError",
    "apply_overrides",
    "coerce_values",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "format_config",
    "load_config",
    "parse_config",
    "read_config_file",
    "replace_path",
    "save_config",
]
