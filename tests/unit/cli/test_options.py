"""The serve command's flags, made from Settings: --help lists each one with its variable and
its default."""

from __future__ import annotations

import pytest

from modelserve.cli.main import build_parser
from modelserve.config.settings import option_specs


def test_help_lists_every_visible_option_with_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for spec in option_specs():
        if not spec.hidden:
            assert (spec.field if spec.positional else spec.flag) in text
            assert spec.env in text
    assert "--reuse-port" not in text
    assert "[default: 30.0]" in text  # the default, written once in the field


def test_the_state_options_name_everything_kept_there() -> None:
    """Monitoring and traffic experiments both keep their state in the store of --state-dir
    (or --store): the help says both, not monitoring alone."""
    specs = {spec.field: spec for spec in option_specs()}
    for field in ("state_dir", "store"):
        text = " ".join(str(specs[field].info.description).split())
        assert "monitoring" in text and "experiments" in text, field
    assert "records, decisions and tallies" in str(specs["state_dir"].info.description)
