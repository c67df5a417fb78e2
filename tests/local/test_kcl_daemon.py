"""Finding and describing the Java KCL daemon (the daemon itself runs in tests/kcl)."""

from __future__ import annotations

from wattstream.local import kcl_daemon


def test_missing_names_java_when_there_is_none(monkeypatch, tmp_path):
    monkeypatch.setattr(kcl_daemon.shutil, "which", lambda _: None)

    reason = kcl_daemon.missing(tmp_path)

    assert reason is not None
    assert "Java" in reason
    assert "apt-get install openjdk-17-jdk-headless maven" in reason


def test_missing_names_the_install_script_when_the_jars_are_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(kcl_daemon.shutil, "which", lambda name: f"/usr/bin/{name}")

    reason = kcl_daemon.missing(tmp_path)

    assert reason is not None
    assert "deploy/kcl/install_kclpy.py" in reason
    assert str(tmp_path) in reason


def test_version_and_command_from_the_fetched_jar(monkeypatch, tmp_path):
    (tmp_path / "amazon-kinesis-client-multilang-3.1.3.jar").touch()
    monkeypatch.setattr(kcl_daemon.shutil, "which", lambda name: f"/usr/bin/{name}")

    assert kcl_daemon.missing(tmp_path) is None
    assert kcl_daemon.version(tmp_path) == "amazon-kinesis-client-multilang 3.1.3"
    local = kcl_daemon.command(tmp_path / "a.properties", local=True, jars=tmp_path)
    aws = kcl_daemon.command(tmp_path / "a.properties", local=False, jars=tmp_path)
    assert "-Daws.cborEnabled=false" in local
    assert "-Daws.cborEnabled=false" not in aws
    assert local[-3:] == [
        kcl_daemon.MAIN_CLASS,
        "--properties-file",
        str(tmp_path / "a.properties"),
    ]
