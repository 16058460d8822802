"""docs/api.md stays true to the code: every setting and every served path is documented."""

from pathlib import Path

from whisper_api import contract
from whisper_api.settings import Settings

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def settings_section() -> str:
    """The settings table: from its `## Settings` heading to the next heading."""
    text = API_DOC.read_text()
    start = text.index("\n## Settings")
    end = text.find("\n#", start + 1)
    return text[start:end]


def test_every_setting_is_in_the_settings_table_with_its_default() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in settings_section().splitlines()
        if line.startswith("| `WHISPER_")
    }
    for name, field in Settings.model_fields.items():
        variable = f"{contract.ENV_PREFIX}{name.upper()}"
        assert variable in rows, f"{variable} is missing from docs/api.md"
        default = field.default
        if default is None:
            assert rows[variable] == "unset"
        elif isinstance(default, list):
            assert rows[variable] == (",".join(default) or "unset"), variable
        elif isinstance(default, bool):
            assert rows[variable] == str(default).lower()
        elif isinstance(default, int | float):
            assert float(rows[variable]) == float(default), variable
        else:
            assert rows[variable] == str(default), variable


def test_every_documented_path_exists(fw_api) -> None:
    text = API_DOC.read_text()
    paths = set(fw_api.get("/openapi.json").json()["paths"])
    for path in paths - {contract.METRICS_PATH}:
        assert f"`{path}`" in text or f" {path}`" in text, f"{path} is not documented in docs/api.md"
