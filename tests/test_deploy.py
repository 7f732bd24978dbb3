"""Keep docker-compose.yml, deploy/ (systemd, Kubernetes), the Procfile and config in agreement."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mes.queueing import broker_lists
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


# -- systemd units and Kubernetes manifests ----------------------------------------------------

SYSTEMD = ROOT / "deploy" / "systemd"
K8S = ROOT / "deploy" / "k8s"
VENV_BIN = "/opt/mes/venv/bin/"


def registry():
    return ModelRegistry.from_file(ROOT / "config" / "models.json")


def without(command, *flags):
    """Drop host-specific options (`-b X` or `--flag=X`) before comparing two commands."""
    out, skip = [], False
    for part in command:
        if skip:
            skip = False
        elif part in flags:
            skip = True
        elif not any(part.startswith(flag + "=") for flag in flags):
            out.append(part)
    return out


def unit(name):
    """Parse a systemd unit into {section: {key: [values]}} (keys may repeat)."""
    sections, current = {}, None
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(name):
    pairs = (line.split("=", 1) for line in (SYSTEMD / name).read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def exec_start(name, **variables):
    """Return a unit's ExecStart as argv, with variables expanded and the venv path dropped."""
    command = unit(name)["Service"]["ExecStart"][0]
    for key, value in variables.items():
        command = command.replace("${%s}" % key, value).replace("$" + key, value)
    return [part.removeprefix(VENV_BIN) for part in shlex.split(command.replace("%%", "%"))]


UNITS = ["mes-web.service", "mes-worker@.service", "mes-beat.service", "mes-flower.service",
         "mes-engine.service"]


def test_every_unit_reads_mes_env_and_restarts_with_a_stop_policy():
    for name in UNITS:
        service = unit(name)["Service"]
        assert "/etc/mes/mes.env" in service["EnvironmentFile"], name
        assert service["Restart"] == ["always"], name
        assert service["KillSignal"] == ["SIGTERM"], name
        assert int(service["TimeoutStopSec"][0]) > 0, name
        assert service["User"] == ["mes"], name
        assert unit(name)["Install"]["WantedBy"] == ["mes.target"], name


def test_worker_template_gives_each_family_its_queue_and_concurrency():
    reg, procs = registry(), procfile()
    service = unit("mes-worker@.service")["Service"]
    assert "/etc/mes/worker-%i.env" in service["EnvironmentFile"]
    # Celery's warm shutdown: SIGTERM to the main process only, time for running jobs.
    assert service["KillMode"] == ["mixed"]
    assert int(service["TimeoutStopSec"][0]) >= max(spec.timeout_s for spec in reg.models)
    for family in reg.families:
        env = env_file(f"worker-{family.name}.env")
        assert env == {"MES_WORKER_QUEUE": family.queue,
                       "MES_WORKER_CONCURRENCY": str(family.concurrency)}
        command = exec_start("mes-worker@.service", **env)
        assert [part.replace("%i", family.name) for part in command] == \
            procs[f"worker_{family.name}"]
    env_files = {path.name for path in SYSTEMD.glob("worker-*.env")}
    assert env_files == {f"worker-{family.name}.env" for family in reg.families}


def test_target_starts_every_service_and_one_worker_per_family():
    wants = " ".join(unit("mes.target")["Unit"]["Wants"]).split()
    expected = {f"mes-worker@{family.name}.service" for family in registry().families}
    assert {"mes-web.service", "mes-beat.service", "mes-flower.service"} | expected <= set(wants)
    assert {w for w in wants if w.startswith("mes-worker@")} == expected


def test_other_units_run_the_procfile_commands():
    procs = procfile()
    assert without(exec_start("mes-web.service"), "-b") == without(procs["web"], "-b")
    assert without(exec_start("mes-beat.service"), "--schedule") == \
        without(procs["beat"], "--schedule")
    flower = exec_start("mes-flower.service")
    assert "--basic-auth=${MES_FLOWER_BASIC_AUTH}" in flower
    assert without(flower, "--address", "--basic-auth") == \
        without(procs["flower"], "--address", "--basic-auth")
    engine = exec_start("mes-engine.service", MES_ENGINE_ARGS="--simulated")
    assert engine == procs["engine"]


def manifests():
    """Return every Kubernetes object in deploy/k8s, by (kind, name)."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objects, key
                assert doc["metadata"].get("namespace") in (None, "mes"), key
                objects[key] = doc
    return objects


def container(doc):
    [only] = doc["spec"]["template"]["spec"]["containers"]
    return only


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_k8s_config_carries_the_model_registry_and_secret_placeholders():
    objects = manifests()
    assert ("Namespace", "mes") in objects
    models = objects[("ConfigMap", "mes-models")]["data"]["models.json"]
    assert json.loads(models) == json.loads((ROOT / "config" / "models.json").read_text())
    env = objects[("ConfigMap", "mes-env")]["data"]
    assert env["MES_MODELS_FILE"] == "/etc/mes/models.json"
    secret = objects[("Secret", "mes-secrets")]["stringData"]
    assert set(secret) >= {"MES_API_KEYS", "MES_FLOWER_BASIC_AUTH"}
    # Every MES pod gets the settings, the secret and the registry where MES_MODELS_FILE says.
    for (kind, name), doc in objects.items():
        if kind == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            refs = [next(iter(source.values()))["name"] for source in container(doc)["envFrom"]]
            assert refs == ["mes-env", "mes-secrets"], name
            mounts = {m["name"]: m["mountPath"] for m in container(doc)["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert mounts["models"] == "/etc/mes", name
            assert volumes["models"]["configMap"]["name"] == "mes-models", name


def test_k8s_redis_keeps_jobs_across_restarts():
    redis = manifests()[("StatefulSet", "redis")]
    command = container(redis)["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"]


def test_k8s_web_probes_and_command():
    objects = manifests()
    web = container(objects[("Deployment", "mes-web")])
    assert without(web["command"], "-b") == without(procfile()["web"], "-b")
    assert web["livenessProbe"]["httpGet"]["path"] == "/health"
    assert web["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert objects[("Service", "mes-web")]["spec"]["selector"] == {"app": "mes-web"}


def test_k8s_one_worker_deployment_and_scaled_object_per_family():
    objects, procs, reg = manifests(), procfile(), registry()
    workers = {name for kind, name in objects if kind == "Deployment" and "worker" in name}
    scaled = {name for kind, name in objects if kind == "ScaledObject"}
    expected = {f"mes-worker-{family.name}" for family in reg.families}
    assert workers == expected and scaled == expected
    for family in reg.families:
        name = f"mes-worker-{family.name}"
        deployment = objects[("Deployment", name)]
        command = container(deployment)["command"]
        assert command[command.index("-Q") + 1] == family.queue
        assert command[command.index("-c") + 1] == str(family.concurrency)
        assert command == procs[f"worker_{family.name}"]
        assert "replicas" not in deployment["spec"]  # KEDA owns the count
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= max(spec.timeout_s for spec in reg.models if spec.family == family)
        so = objects[("ScaledObject", name)]
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert so["spec"]["scaleTargetRef"]["name"] == name
        # /ready needs a live worker per family: never scale a family to zero.
        assert so["spec"]["minReplicaCount"] >= 1
        assert so["spec"]["maxReplicaCount"] >= so["spec"]["minReplicaCount"]
        triggers = so["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        assert [t["metadata"]["listName"] for t in triggers] == broker_lists(family.queue)
        for trigger in triggers:
            assert int(trigger["metadata"]["listLength"]) >= 1
            host, _, port = trigger["metadata"]["address"].partition(":")
            assert host.split(".")[0] == "redis" and port == "6379"


def test_k8s_single_beat_and_flower_with_auth():
    objects, procs = manifests(), procfile()
    beat = objects[("Deployment", "mes-beat")]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert without(container(beat)["command"], "--schedule") == without(procs["beat"], "--schedule")
    flower = container(objects[("Deployment", "mes-flower")])
    assert "--basic-auth=$(MES_FLOWER_BASIC_AUTH)" in flower["command"]
    assert without(flower["command"], "--address", "--basic-auth") == \
        without(procs["flower"], "--address", "--basic-auth")
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"


def test_dockerfile_builds_the_one_image_the_manifests_run():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    for source in ("mes", "web", "workers", "config"):
        assert f"COPY {source} ./{source}" in text
    images = {container(doc)["image"] for (kind, name), doc in manifests().items()
              if kind == "Deployment"}
    assert images == {"mes:latest"}


def test_systemd_analyze_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    names = [name.replace("@.", "@phi.") for name in UNITS] + ["mes.target"]
    for name in names:
        source = (SYSTEMD / name.replace("@phi.", "@.")).read_text()
        # verify wants the programs to exist; check the unit syntax, not this host's install.
        (tmp_path / name).write_text(source.replace(VENV_BIN + "gunicorn", "/bin/true")
                                     .replace(VENV_BIN + "celery", "/bin/true")
                                     .replace(VENV_BIN + "python", "/bin/true"))
    result = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line]
    assert not problems, "\n".join(problems)
