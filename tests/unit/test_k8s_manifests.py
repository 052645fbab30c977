"""deploy/k8s: valid Kubernetes objects, and a blue-green pair that switches by one selector.

What it proves, offline (no cluster, no kustomize binary needed):

- each kustomization renders: ``render`` below builds it the way kustomize does, for the fields
  this tree uses (resources, namespace, images, patches) and refuses any other, and where
  kubectl is installed its ``kubectl kustomize`` must give the same objects;
- every rendered object of the base and of both overlays is valid against the OpenAPI schemas of
  Kubernetes 1.30 and 1.37 (kubernetes-validate, strict: an unknown or misspelt field fails);
- the rules of the pair: the base has one Deployment per colour, the same but for the colour;
  the Service selects exactly one colour; readiness on ``/readyz``, liveness on ``/livez``, both
  on port 3000, and a startup probe; every container has requests and limits, sized from the
  measured server; the PDBs and HPAs target the Deployments; the images are release tags; the
  pods run as the image's non-root user on a read-only root; and in each overlay switching the
  colour is one patch of the Service's selector, whose flip changes nothing else.

Each rule is a function of the tree; ``test_a_broken_copy_fails_the_rule`` breaks a copy of the
tree in one place per rule and sees that rule fail.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import kubernetes_validate
import pytest
import yaml
from bentoml._internal.container.generate import BENTO_UID_GID

from conftest import ROOT, unavailable

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
COLOURS = ("blue", "green")
#: the oldest and the newest Kubernetes the manifests are validated against
VERSIONS = ("1.30", "1.37")
PORT = 3000
#: where the pods write: an emptyDir in the pod, not a directory of this machine
SCRATCH = "/tmp"  # noqa: S108 - a path inside the pod, never opened here
#: kustomization fields ``render`` applies; a kustomization with any other is refused
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}
#: what release.yml pushes: ghcr.io/<owner, lower-cased>/flight-delay:sha-<sha7> or :<semver>
RELEASE_IMAGE = re.compile(r"ghcr\.io/[a-z0-9-]+/flight-delay:(sha-[0-9a-f]{7}|\d+\.\d+\.\d+)")
QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
#: each container's security context, the pod's with the container's over it
SECURITY: dict[str, object] = {
    "runAsNonRoot": True,
    "runAsUser": BENTO_UID_GID,  # the user bentoml of BentoML's Dockerfile
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}

Manifest = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def render(directory: Path) -> list[Manifest]:
    """The objects of the kustomization in ``directory``, in kustomize's order of work: its
    resources (files, or directories rendered first), then its patches, its namespace and its
    images."""
    spec = load_documents(directory / "kustomization.yaml")[0]
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise NotImplementedError(f"{directory}: render() does not apply {sorted(unknown)}")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_documents(path)
    for patch in spec.get("patches", []):
        apply_patch(objects, patch, directory)
    for obj in objects:
        if "namespace" in spec and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        set_image(objects, image)
    return objects


def patch_body(entry: Manifest, directory: Path) -> Any:
    if set(entry) - {"path", "patch", "target"} or ("path" in entry) == ("patch" in entry):
        raise NotImplementedError(f"a patch is a path or an inline patch, with a target: {entry}")
    text = (directory / entry["path"]).read_text("utf-8") if "path" in entry else entry["patch"]
    return yaml.safe_load(text)


def patch_target(entry: Manifest, body: Any) -> dict[str, str]:
    """A patch's target: the one it names, else (a strategic merge patch) its own kind and name."""
    if "target" in entry:
        target: dict[str, str] = entry["target"]
    elif isinstance(body, dict):
        target = {"kind": body["kind"], "name": body["metadata"]["name"]}
    else:
        raise ValueError(f"a JSON patch needs a target: {entry}")
    if set(target) - {"kind", "name"}:
        raise NotImplementedError(f"render() selects by kind and name only: {target}")
    return target


def apply_patch(objects: list[Manifest], entry: Manifest, directory: Path) -> None:
    """A JSON patch (a list of operations) or a strategic merge patch (an object) on each object
    its target selects; one that selects nothing is an error, as in kustomize."""
    body = patch_body(entry, directory)
    target = patch_target(entry, body)
    selected = [
        obj
        for obj in objects
        if obj["kind"] == target["kind"]
        and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]
    ]
    if not selected:
        raise ValueError(f"patch {entry} selects no object")
    for obj in selected:
        if isinstance(body, list):
            json_patch(obj, body)
        else:
            merge(obj, merge_patch(body))


def merge_patch(body: Manifest) -> Manifest:
    """A strategic merge patch without what identifies its object."""
    patch = {k: copy.deepcopy(v) for k, v in body.items() if k not in {"apiVersion", "kind"}}
    meta = {k: v for k, v in patch.pop("metadata", {}).items() if k not in {"name", "namespace"}}
    return patch | ({"metadata": meta} if meta else {})


def merge(obj: Manifest, patch: Manifest) -> None:
    """Maps merge key by key, ``null`` deletes; lists merge by their patch-merge keys in
    kustomize, which this tree never asks of a strategic merge patch, so they are refused."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(obj.get(key), dict):
            merge(obj[key], value)
        elif isinstance(value, list):
            raise NotImplementedError(f"render() merges no lists ({key}): use a JSON patch")
        elif value is None:
            obj.pop(key, None)
        else:
            obj[key] = copy.deepcopy(value)


def json_patch(obj: Manifest, operations: list[Manifest]) -> None:
    """RFC 6902 ``add``, ``replace`` and ``remove`` on paths through maps."""
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
        ]
        node = obj
        for part in parents:
            node = node[part]
        if not isinstance(node, dict):
            raise NotImplementedError(f"render() patches maps only: {operation}")
        if operation["op"] in {"replace", "remove"} and last not in node:
            raise ValueError(f"{operation['op']} of a missing {operation['path']}")
        if operation["op"] in {"add", "replace"}:
            node[last] = copy.deepcopy(operation["value"])
        elif operation["op"] == "remove":
            del node[last]
        else:
            raise NotImplementedError(f"render() applies add, replace and remove: {operation}")


def set_image(objects: list[Manifest], image: Manifest) -> None:
    """kustomize ``images``: a container whose image name is ``name`` gets newName and newTag."""
    if set(image) - {"name", "newName", "newTag"}:
        raise NotImplementedError(f"render() sets newName and newTag only: {image}")
    for container in (c for obj in objects for c in pod_containers(obj)):
        ref = container["image"]
        name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        if name == image["name"]:
            tag = str(image.get("newTag", tag))
            container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def pod_containers(obj: Manifest) -> list[Manifest]:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def keyed(objects: list[Manifest]) -> dict[tuple[str, str, str], Manifest]:
    found = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects
    }
    assert len(found) == len(objects), "two objects of one kind, namespace and name"
    return found


# --- what the rules read -------------------------------------------------------------------------


def rendered(root: Path) -> Iterator[tuple[str, list[Manifest]]]:
    """The base and each overlay, rendered, by name."""
    yield "base", render(root / "base")
    for overlay in OVERLAYS:
        yield overlay, render(root / "overlays" / overlay)


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def colour_of(obj: Manifest) -> str | None:
    colour: str | None = obj["metadata"].get("labels", {}).get("colour")
    return colour


def containers(objects: list[Manifest]) -> Iterator[tuple[str, Manifest, Manifest]]:
    """Each Deployment's name, its pod spec and each of its containers."""
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield deployment["metadata"]["name"], pod, container


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``512Mi``, ``1G``) as a number."""
    found = QUANTITY.fullmatch(str(value))
    assert found, f"not a Kubernetes quantity: {value!r}"
    return float(found[1]) * UNITS.get(found[2] or "", 1)


def env_of(container: Manifest) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def documented_settings() -> set[str]:
    """The env vars of the Settings table of docs/deployment.md."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", text, re.M))


def differences(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """The paths at which two parsed documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differences(a.get(key), b.get(key), f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield where


# --- the rules ------------------------------------------------------------------------------------


def every_object_is_valid_kubernetes(root: Path) -> None:
    errors = []
    for name, objects in rendered(root):
        for obj, version in ((o, v) for o in objects for v in VERSIONS):
            what = f"{name}: {obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{what}: {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{what}: {e.message}")
    assert not errors, "\n".join(errors)


def the_base_has_a_deployment_per_colour_the_same_but_for_the_colour(root: Path) -> None:
    deployments = of_kind(render(root / "base"), "Deployment")
    by_colour = {colour_of(d): d for d in deployments}
    assert sorted(map(str, by_colour)) == sorted(COLOURS), by_colour.keys()
    assert len(deployments) == len(COLOURS), [d["metadata"]["name"] for d in deployments]
    for colour, deployment in by_colour.items():
        spec = deployment["spec"]
        assert deployment["metadata"]["name"] == f"flight-delay-{colour}"
        assert spec["selector"]["matchLabels"].get("colour") == colour, spec["selector"]
        assert spec["template"]["metadata"]["labels"].get("colour") == colour
    blue, green = (json.loads(json.dumps(by_colour[c]).replace(c, "<colour>")) for c in COLOURS)
    assert blue == green, f"blue and green differ at {list(differences(blue, green))}"


def the_service_selects_exactly_one_colour(root: Path) -> None:
    for name, objects in rendered(root):
        services = of_kind(objects, "Service")
        assert len(services) == 1, f"{name}: {len(services)} Services"
        selector = services[0]["spec"].get("selector", {})
        assert selector.get("colour") in COLOURS, f"{name}: the Service selects {selector}"
        assert "app.kubernetes.io/name" in selector, f"{name}: selects other apps' pods too"
        selected = [
            colour_of(d)
            for d in of_kind(objects, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [selector["colour"]], f"{name}: the Service selects {selected}"


def probes_are_readyz_and_livez_on_port_3000(root: Path) -> None:
    for name, objects in rendered(root):
        (service,) = of_kind(objects, "Service")
        for deployment, _, container in containers(objects):
            where = f"{name}: {deployment}/{container['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            assert PORT in ports.values(), f"{where}: no container port {PORT}: {ports}"
            for port in service["spec"]["ports"]:
                assert ports.get(port["targetPort"], port["targetPort"]) == PORT, port
            for probe, path in (
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/livez"),
                ("startupProbe", None),
            ):
                get = container.get(probe, {}).get("httpGet")
                assert get, f"{where}: no {probe} by HTTP GET"
                assert path in {None, get["path"]}, f"{where}: {probe} on {get['path']}"
                assert ports.get(get["port"], get["port"]) == PORT, f"{where}: {probe} {get}"


def every_container_has_requests_and_limits(root: Path) -> None:
    for name, objects in rendered(root):
        for deployment, _, container in containers(objects):
            where = f"{name}: {deployment}/{container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None, f"{where}: no {resource} request"
                assert limit is not None, f"{where}: no {resource} limit"
                assert quantity(request) <= quantity(limit), f"{where}: {resource} request > limit"


def the_resources_fit_the_measured_server(root: Path) -> None:
    """Memory from docs/performance.md's measure (metrics/benchmark_http.json, MiB), and room in
    the limit for the bodies the server may hold at once; one core per worker."""
    measured = json.loads((ROOT / "metrics" / "benchmark_http.json").read_text("utf-8"))
    rss = measured["server_rss_mb"] * 2**20
    for name, objects in rendered(root):
        for deployment, _, container in containers(objects):
            where = f"{name}: {deployment}/{container['name']}"
            env = env_of(container)
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            bodies = int(env["FLIGHTDELAY_MAX_CONCURRENCY"]) * int(
                env["FLIGHTDELAY_MAX_BODY_BYTES"]
            )
            assert quantity(requests["memory"]) >= rss, f"{where}: below the measured {rss:.0f} B"
            assert quantity(limits["memory"]) >= rss + bodies, f"{where}: no room for bodies"
            assert quantity(requests["cpu"]) == int(env["FLIGHTDELAY_WORKERS"]), where


def the_settings_are_the_documented_ones(root: Path) -> None:
    documented = documented_settings()
    assert "FLIGHTDELAY_WORKERS" in documented, "docs/deployment.md's Settings table moved"
    for name, objects in rendered(root):
        for deployment, _, container in containers(objects):
            env = env_of(container)
            assert "FLIGHTDELAY_WORKERS" in env, f"{name}: {deployment}: workers not set"
            unknown = {e for e in env if e.startswith("FLIGHTDELAY_")} - documented
            assert not unknown, f"{name}: {deployment}: not in docs/deployment.md: {unknown}"


def the_pdbs_and_hpas_target_the_deployments(root: Path) -> None:
    for name, objects in rendered(root):
        deployments = of_kind(objects, "Deployment")
        pdbs, hpas = (
            of_kind(objects, "PodDisruptionBudget"),
            of_kind(objects, "HorizontalPodAutoscaler"),
        )
        assert len(pdbs) == len(hpas) == len(deployments), f"{name}: one PDB and HPA each"
        for deployment in deployments:
            dname, spec = deployment["metadata"]["name"], deployment["spec"]
            assert "replicas" not in spec, f"{name}: {dname}: replicas belong to its HPA"
            budgets = [p for p in pdbs if p["spec"]["selector"] == spec["selector"]]
            assert len(budgets) == 1, f"{name}: {dname} has {len(budgets)} PDBs"
            ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": dname}
            scalers = [h for h in hpas if h["spec"]["scaleTargetRef"] == ref]
            assert len(scalers) == 1, f"{name}: {dname} has {len(scalers)} HPAs"
            hpa = scalers[0]["spec"]
            assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"], f"{name}: {dname}: {hpa}"
            metrics = [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"]
            assert metrics == ["cpu"], f"{name}: {dname} scales on {metrics}"


def the_images_are_release_tags(root: Path) -> None:
    for overlay in OVERLAYS:
        for deployment, _, container in containers(render(root / "overlays" / overlay)):
            image = container["image"]
            assert RELEASE_IMAGE.fullmatch(image), f"{overlay}: {deployment} runs {image}"


def the_pods_run_as_the_image_user_on_a_read_only_root(root: Path) -> None:
    for name, objects in rendered(root):
        for deployment, pod, container in containers(objects):
            where = f"{name}: {deployment}/{container['name']}"
            security = pod.get("securityContext", {}) | container.get("securityContext", {})
            for key, wanted in SECURITY.items():
                assert security.get(key) == wanted, f"{where}: {key} {security.get(key)!r}"
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert set(mounts.values()) <= set(volumes), f"{where}: mounts a missing volume"
            assert "emptyDir" in volumes.get(mounts.get(SCRATCH, ""), {}), f"{where}: {SCRATCH}"


def service_patches(overlay: Path) -> list[tuple[Manifest, Any]]:
    spec = load_documents(overlay / "kustomization.yaml")[0]
    found = []
    for entry in spec.get("patches", []):
        body = patch_body(entry, overlay)
        if patch_target(entry, body)["kind"] == "Service":
            found.append((entry, body))
    return found


def switching_colour_is_one_patch_of_the_service_selector(root: Path) -> None:
    for overlay in OVERLAYS:
        patches = service_patches(root / "overlays" / overlay)
        assert len(patches) == 1, f"{overlay}: {len(patches)} patches of the Service"
        entry, body = patches[0]
        colour = body.get("spec", {}).get("selector", {}).get("colour")
        assert colour in COLOURS, f"{overlay}: {entry} sets no colour"
        assert merge_patch(body) == {"spec": {"selector": {"colour": colour}}}, (
            f"{overlay}: {entry} patches more than the selector's colour: {merge_patch(body)}"
        )
        before = keyed(render(root / "overlays" / overlay))
        with tempfile.TemporaryDirectory() as scratch:
            flipped = Path(scratch) / "k8s"
            shutil.copytree(root, flipped)
            body["spec"]["selector"]["colour"] = next(c for c in COLOURS if c != colour)
            (flipped / "overlays" / overlay / entry["path"]).write_text(yaml.safe_dump(body))
            after = keyed(render(flipped / "overlays" / overlay))
        changed = [
            (key, path)
            for key in before | after
            for path in differences(before.get(key), after.get(key))
        ]
        service = ("Service", f"flight-delay-{overlay}", "flight-delay")
        assert changed == [(service, ".spec.selector.colour")], (
            f"{overlay}: the flip changes {changed}"
        )


RULES: list[Callable[[Path], None]] = [
    every_object_is_valid_kubernetes,
    the_base_has_a_deployment_per_colour_the_same_but_for_the_colour,
    the_service_selects_exactly_one_colour,
    probes_are_readyz_and_livez_on_port_3000,
    every_container_has_requests_and_limits,
    the_resources_fit_the_measured_server,
    the_settings_are_the_documented_ones,
    the_pdbs_and_hpas_target_the_deployments,
    the_images_are_release_tags,
    the_pods_run_as_the_image_user_on_a_read_only_root,
    switching_colour_is_one_patch_of_the_service_selector,
]


class Break(NamedTuple):
    """One edit of a copy of deploy/k8s that ``rule`` must refuse, with what it then says."""

    rule: Callable[[Path], None]
    file: str
    pattern: str  # a regular expression; its first match is replaced
    replacement: str
    says: str


BREAKS = [
    Break(
        every_object_is_valid_kubernetes,
        "base/deployment-blue.yaml",
        "readinessProbe:",
        "readinesProbe:",
        "'readinesProbe' was unexpected",
    ),
    Break(
        the_base_has_a_deployment_per_colour_the_same_but_for_the_colour,
        "base/deployment-green.yaml",
        'value: "256"',
        'value: "128"',
        "blue and green differ at",
    ),
    Break(
        the_service_selects_exactly_one_colour,
        "overlays/production/service-colour.yaml",
        "colour: blue",
        "colour: cyan",
        "production: the Service selects",
    ),
    Break(
        the_service_selects_exactly_one_colour,
        "base/service.yaml",
        "    colour: blue  #",
        "    #",
        "base: the Service selects",
    ),
    Break(
        probes_are_readyz_and_livez_on_port_3000,
        "base/deployment-green.yaml",
        "path: /livez",
        "path: /readyz",
        "livenessProbe on /readyz",
    ),
    Break(
        probes_are_readyz_and_livez_on_port_3000,
        "base/deployment-blue.yaml",
        "containerPort: 3000",
        "containerPort: 8080",
        "no container port 3000",
    ),
    Break(
        every_container_has_requests_and_limits,
        "base/deployment-blue.yaml",
        '            limits:\n              cpu: "2"\n',
        "            limits:\n",
        "no cpu limit",
    ),
    Break(
        the_resources_fit_the_measured_server,
        "base/deployment-blue.yaml",
        "memory: 512Mi",
        "memory: 256Mi",
        "below the measured",
    ),
    Break(
        the_settings_are_the_documented_ones,
        "base/deployment-blue.yaml",
        "FLIGHTDELAY_ACCESS_LOG",
        "FLIGHTDELAY_ACCESSLOG",
        "not in docs/deployment.md",
    ),
    Break(
        the_pdbs_and_hpas_target_the_deployments,
        "base/hpa.yaml",
        "    name: flight-delay-green\n  minReplicas",
        "    name: flight-delay-blue\n  minReplicas",
        "flight-delay-blue has 2 HPAs",
    ),
    Break(
        the_pdbs_and_hpas_target_the_deployments,
        "base/pdb.yaml",
        "      colour: green",
        "      colour: greem",
        "flight-delay-green has 0 PDBs",
    ),
    Break(
        the_images_are_release_tags,
        "overlays/staging/kustomization.yaml",
        'newTag: "?[^\\n]*',
        "newTag: latest",
        "runs ghcr.io/owner/flight-delay:latest",
    ),
    Break(
        the_pods_run_as_the_image_user_on_a_read_only_root,
        "base/deployment-blue.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "readOnlyRootFilesystem False",
    ),
    Break(
        the_pods_run_as_the_image_user_on_a_read_only_root,
        "base/deployment-green.yaml",
        "runAsUser: 1034",
        "runAsUser: 0",
        "runAsUser 0",
    ),
    Break(
        switching_colour_is_one_patch_of_the_service_selector,
        "overlays/production/service-colour.yaml",
        "spec:\n  selector:",
        "spec:\n  sessionAffinity: ClientIP\n  selector:",
        "patches more than the selector's colour",
    ),
]


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_the_manifests_keep_the_rule(rule: Callable[[Path], None]) -> None:
    rule(K8S)


@pytest.mark.parametrize(
    "broken", BREAKS, ids=[f"{b.rule.__name__}-{b.file}-{b.replacement}" for b in BREAKS]
)
def test_a_broken_copy_fails_the_rule(tmp_path: Path, broken: Break) -> None:
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    path = root / broken.file
    edited, found = re.subn(broken.pattern, broken.replacement, path.read_text("utf-8"), count=1)
    assert found, f"{broken.file}: nothing to break: {broken.pattern!r}"
    path.write_text(edited, encoding="utf-8")
    with pytest.raises(AssertionError, match=re.escape(broken.says)):
        broken.rule(root)


def test_every_rule_has_a_break() -> None:
    assert {r.__name__ for r in RULES} == {b.rule.__name__ for b in BREAKS}


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_render_builds_what_kubectl_kustomize_builds(directory: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl is not installed (`kubectl kustomize` builds the kustomization)")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / directory)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    theirs = keyed([doc for doc in yaml.safe_load_all(built) if doc])
    ours = keyed(render(K8S / directory))
    assert ours.keys() == theirs.keys(), (
        f"ours only: {ours.keys() - theirs.keys()}, kubectl's only: {theirs.keys() - ours.keys()}"
    )
    for key, obj in ours.items():
        assert obj == theirs[key], f"{key} differs at {list(differences(obj, theirs[key]))}"


def test_render_refuses_what_it_does_not_apply(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "base" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text("utf-8") + "namePrefix: x-\n", "utf-8")
    with pytest.raises(NotImplementedError, match="namePrefix"):
        render(tmp_path / "k8s" / "base")
