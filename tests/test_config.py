from __future__ import annotations

from pathlib import Path

import pytest

from pullprint import config as configmod


def test_defaults_when_default_file_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(configmod.ENV_VAR, raising=False)
    monkeypatch.setattr(configmod, "DEFAULT_PATH", Path("/nonexistent/pullprint.toml"))
    cfg = configmod.load()
    assert cfg.node.queues == ("PullPrint",)
    assert cfg.cloud.listen_port == 8631


def test_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(configmod.ConfigError, match="not found"):
        configmod.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nname = 3\n", "node.name"),
        ('[node]\nqueues = "PullPrint"\n', "node.queues"),
        ('[cloud]\nlisten_port = "x"\n', "cloud.listen_port"),
        ("[cloud]\nlisten_port = -1\n", "cloud.listen_port"),
        ("[cloud]\nnode_tokens = { a = 1 }\n", "cloud.node_tokens"),
        ("[node]\npoll_timeout = 0\n", "node.poll_timeout"),
        ('[node]\nspool_dirr = "/x"\n', "node.spool_dirr"),
        ("[nodes]\n", "nodes"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path)
    assert str(err.value).startswith(key)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[node\n")
    with pytest.raises(configmod.ConfigError, match="not valid TOML"):
        configmod.load(path)


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = configmod.Config(
        cloud=configmod.CloudConfig(admin_token='a"b\\c', node_tokens={"n1": "t"}),
        node=configmod.NodeConfig(name="n1", queues=("A", "B"), spool_dir=tmp_path),
    )
    path = tmp_path / "c.toml"
    path.write_text(configmod.dump(cfg))
    back = configmod.load(path)
    assert back.cloud == cfg.cloud
    assert back.node == cfg.node
