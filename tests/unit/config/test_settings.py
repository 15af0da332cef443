"""Settings: every server option once, with one flag, one MODELSERVE_* variable, one server-file
key and a description; the defaults are the field's; docs/configuration.md shows them all."""

from __future__ import annotations

from modelserve.config.settings import Settings, option_specs
from tests.harness import ROOT


def test_every_option_has_one_flag_env_and_key_and_a_description() -> None:
    specs = option_specs()
    user_fields = {name for name in Settings.model_fields if name != "auth_tokens"}
    assert {spec.field for spec in specs} == user_fields
    for attribute in ("flag", "env", "key"):
        values = [getattr(spec, attribute) for spec in specs]
        assert len(values) == len(set(values)), attribute
    for spec in specs:
        assert spec.info.description, spec.field
        assert spec.env == "MODELSERVE_" + spec.key.upper()


def test_docs_list_every_option_as_the_code_defines_it() -> None:
    from modelserve.cli.tools import settings_markdown

    text = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_markdown() in text, "run: modelserve schema --settings --markdown"
