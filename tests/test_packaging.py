"""What can be checked of the Dockerfile, the compose stack and README without a Docker engine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cancelnotify.cli import _parser
from cancelnotify.settings import Settings, settings_markdown

ROOT = Path(__file__).resolve().parents[1]


def final_stage(dockerfile: str) -> list[str]:
    lines = [line.strip() for line in dockerfile.splitlines()]
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[start:]


class TestDockerfile:
    def test_runtime_runs_the_console_script_as_a_non_root_user(self) -> None:
        stage = final_stage((ROOT / "Dockerfile").read_text())
        users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
        assert users
        assert users[-1] not in ("root", "0")
        cmd = [line for line in stage if line.upper().startswith("CMD ")][-1]
        assert cmd == 'CMD ["cancelnotify", "serve"]'
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts["cancelnotify"] == "cancelnotify.cli:main"

    def test_base_image_is_a_slim_python_new_enough(self) -> None:
        froms = re.findall(r"^FROM python:(3\.\d+)-slim", (ROOT / "Dockerfile").read_text(), re.M)
        assert froms
        assert all(tuple(map(int, v.split("."))) >= (3, 11) for v in froms)

    async def test_healthcheck_probes_a_path_the_app_answers(
        self, client: httpx.AsyncClient
    ) -> None:
        text = (ROOT / "Dockerfile").read_text()
        path = re.search(r"HEALTHCHECK.*?http://127\.0\.0\.1:8000(/\w+)", text, re.S)
        assert path is not None
        assert (await client.get(path.group(1))).status_code == 200


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


class TestCompose:
    def test_services_and_their_order(self) -> None:
        services = compose()["services"]
        assert set(services) == {"postgres", "migrate", "app", "mailpit"}
        assert "healthcheck" in services["postgres"]
        assert any("pgdata" in v for v in services["postgres"]["volumes"])
        assert services["app"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert (
            services["app"]["depends_on"]["migrate"]["condition"]
            == "service_completed_successfully"
        )
        assert services["migrate"]["command"] == ["cancelnotify", "migrate"]
        assert services["app"]["command"] == ["cancelnotify", "serve"]

    def test_every_setting_named_in_compose_exists(self) -> None:
        fields = {name.upper() for name in Settings.model_fields}
        for service in compose()["services"].values():
            for key in service.get("environment", {}):
                if key.startswith("CANCELNOTIFY_"):
                    assert key.removeprefix("CANCELNOTIFY_") in fields, key

    @pytest.mark.parametrize("command", ["migrate", "serve"])
    def test_commands_used_by_compose_exist(self, command: str) -> None:
        assert _parser().parse_args([command]).command == command


class TestReadme:
    def test_configuration_table_matches_settings(self) -> None:
        readme = (ROOT / "README.md").read_text()
        block = re.search(
            r"<!-- settings-table:start[^>]*-->\n(.*?)\n<!-- settings-table:end -->", readme, re.S
        )
        assert block is not None, "README lost its generated settings table"
        assert block.group(1) == settings_markdown(), "run `cancelnotify config` and paste it"

    def test_the_two_commands_are_on_top(self) -> None:
        readme = (ROOT / "README.md").read_text()
        top = readme[: readme.index("## How it works")]
        assert "scripts/dev" in top
        assert "scripts/test" in top
        assert "cancelnotify dev" in top
        ci = (ROOT / ".ci" / "run").read_text()
        assert "scripts/test" in ci
