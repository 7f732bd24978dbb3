"""Keep docker-compose.yml, the Procfile and config/models.json in agreement."""

import shlex
from pathlib import Path

import yaml

from mes.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]


def load_compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def procfile():
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    return {name: shlex.split(cmd) for name, cmd in (line.split(": ", 1) for line in lines)}


def test_one_compose_worker_per_family_with_queue_and_concurrency():
    registry = ModelRegistry.from_file(ROOT / "config" / "models.json")
    services = load_compose()["services"]
    procs = procfile()
    for family in registry.families:
        name = f"worker_{family.name}"
        command = services[name]["command"]
        assert command[command.index("-Q") + 1] == family.queue
        assert command[command.index("-c") + 1] == str(family.concurrency)
        assert command == procs[name], name
    compose_workers = {name for name in services if name.startswith("worker_")}
    assert compose_workers == {f"worker_{f.name}" for f in registry.families}


def test_compose_has_every_service_with_a_health_check():
    services = load_compose()["services"]
    assert {"redis", "ollama", "web", "beat", "flower"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_redis_keeps_jobs_across_restarts():
    command = load_compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_web_command_matches_procfile_apart_from_bind():
    web = load_compose()["services"]["web"]["command"]
    proc = procfile()["web"]
    strip = lambda cmd: [part for i, part in enumerate(cmd) if "-b" not in cmd[i - 1:i] and part != "-b"]
    assert strip(web) == strip(proc)
