"""The codec commands' shared command line: tyro subcommands with the shared flags, and
one exit status rule (0 wrote something, 1 nothing or an error, 2 usage)."""

import dataclasses

import numpy as np
import pytest

from tokenizer.alpha.infer import AlphaInferArgs
from tokenizer.codec.cli import UsageError, exit_status, parse_codec_command
from tokenizer.codec.file_commands import codec_command
from tokenizer.codec.token_io import TokenFileError
from tokenizer.snac.infer import SnacInferArgs


def test_subcommands_share_the_codec_flags():
    args = parse_codec_command(
        AlphaInferArgs, ["roundtrip", "in", "out", "--run", "runs/x", "--step", "best",
                         "--batch-size", "3", "--no-loudness", "--strict", "--stream",
                         "--chunk-frames", "10"], prog="p", description="d")
    assert args.command == "roundtrip"
    assert (str(args.files.input), str(args.files.output)) == ("in", "out")
    assert (args.files.batch_size, args.files.loudness, args.files.strict) == (3, False, True)
    assert (args.run.run, args.run.step, args.stream, args.chunk_frames) == (
        "runs/x", "best", True, 10)
    snac = parse_codec_command(SnacInferArgs, ["decode", "a", "b", "--step", "4",
                                               "--bucket-seconds", "0"],
                               prog="p", description="d")
    assert (snac.command, snac.run.step, snac.run.run, snac.bucket_seconds) == (
        "decode", 4, None, 0.0)
    assert snac.files.loudness and not snac.files.strict
    assert snac.files.output_rate is None and not snac.files.keep_truncated
    rt = parse_codec_command(AlphaInferArgs, ["roundtrip", "a", "b", "--output-rate", "44100",
                                              "--keep-truncated"], prog="p", description="d")
    assert (rt.files.output_rate, rt.files.keep_truncated) == (44100, True)


@pytest.mark.parametrize("argv", [[], ["transcode", "a", "b"], ["encode", "a"],
                                  ["encode", "a", "b", "--step", "first"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_codec_command(AlphaInferArgs, argv, prog="p", description="d")
    assert e.value.code == 2


def test_exit_status_rule(capsys):
    assert exit_status(lambda: 3) == 0
    assert exit_status(lambda: 0) == 1
    assert "nothing was produced" in capsys.readouterr().err

    def fails(error):
        def run():
            raise error
        return run

    assert exit_status(fails(TokenFileError("x.npz: not a token file"))) == 1
    assert "error: x.npz: not a token file" in capsys.readouterr().err
    assert exit_status(fails(FileNotFoundError("no run"))) == 1
    assert exit_status(fails(UsageError("--limit must be >= 1"))) == 2
    with pytest.raises(KeyError):  # a bug stays a traceback
        exit_status(fails(KeyError("x")))


@dataclasses.dataclass
class _Unreadable:
    """A token file type no file is of."""

    @staticmethod
    def load(path):
        raise TokenFileError(f"{path}: not an alpha token file")


class _FakeTokenizer:
    token_file_type = _Unreadable
    sample_rate, run_dir, step = 24000, "runs/x", 4

    def decode(self, tokens, **kw):
        return [np.zeros(10, np.float32) for _ in tokens]


def test_decoding_only_foreign_files_writes_nothing_and_exits_1(tmp_path, capsys):
    for i in range(3):
        (tmp_path / "in" / f"{i}.npz").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i}.npz").write_bytes(b"a SNAC token file")
    result = {}

    def run():
        result.update(codec_command("decode", tmp_path / "in", tmp_path / "out",
                                    _FakeTokenizer()))
        return len(result["written"])

    assert exit_status(run) == 1
    assert result["written"] == [] and len(result["skipped"]) == 3
    assert "nothing was produced" in capsys.readouterr().err
