#!/usr/bin/env python3
"""Offline checks deploy/validate.sh runs besides the standard validators.

    checks.py split-crds RENDERED OUT      validate custom resources (KEDA,
                                           Prometheus Operator) against the
                                           schemas below and collector
                                           configs' pipelines; write every
                                           other document to OUT for
                                           kubernetes-validate
    checks.py session-table REPO           the CloudFormation session table
                                           is what `parley-session
                                           create-tables` creates
    checks.py filter-policy REPO           the local stack's streaming
                                           filter policy is the template's
    checks.py compose REPO                 docker-compose.yml is coherent

Each prints one line per finding and exits 1 when something is wrong.
Needs PyYAML and jsonschema (both in the validators' virtual environment).
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml


# ----------------------------------------------------------------- YAML --
class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsics become
    {"Fn::X": value} (or {"Ref": value})."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_cfn(path):
    return yaml.load(pathlib.Path(path).read_text(), Loader=CfnLoader)


# ------------------------------------------------------- custom resources --
# Schemas of the custom resources the chart renders, written from the
# CRDs' documented fields (KEDA 2.13+ keda.sh/v1alpha1, Prometheus Operator
# monitoring.coreos.com/v1). kubernetes-validate has no CRD schemas, so
# these catch misspelt fields and wrong types (KEDA trigger metadata must
# be strings) that would otherwise only fail at install time.
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {"name": {"type": "string"},
                                       "kind": {"type": "string"},
                                       "apiVersion": {"type": "string"},
                                       "envSourceContainerName": {"type": "string"}},
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {
                        "type": "object", "additionalProperties": False,
                        "required": ["failureThreshold", "replicas"],
                        "properties": {"failureThreshold": {"type": "integer"},
                                       "replicas": {"type": "integer"}},
                    },
                    "advanced": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object", "additionalProperties": False,
                                "properties": {"name": {"type": "string"},
                                               "behavior": {"type": "object"}},
                            },
                            "scalingModifiers": {"type": "object"},
                        },
                    },
                    "triggers": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object", "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                                "metadata": _STRING_MAP,
                                "authenticationRef": {
                                    "type": "object", "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {"name": {"type": "string"},
                                                   "kind": {"enum": ["TriggerAuthentication",
                                                                     "ClusterTriggerAuthentication"]}},
                                },
                            },
                            "allOf": [
                                {"if": {"properties": {"type": {"const": "aws-sqs-queue"}}},
                                 "then": {"properties": {"metadata": {
                                     "required": ["queueURL"],
                                     "properties": {
                                         "queueURL": {"type": "string", "pattern": "^https?://"},
                                         "queueLength": {"type": "string", "pattern": "^[0-9]+$"},
                                         "activationQueueLength": {"type": "string", "pattern": "^[0-9]+$"},
                                         "scaleOnInFlight": {"enum": ["true", "false"]},
                                         "scaleOnDelayed": {"enum": ["true", "false"]},
                                         "awsRegion": {"type": "string"},
                                         "awsEndpoint": {"type": "string"},
                                     },
                                     "additionalProperties": False}}}},
                                {"if": {"properties": {"type": {"const": "cpu"}}},
                                 "then": {"required": ["metricType"],
                                          "properties": {"metadata": {
                                              "required": ["value"],
                                              "properties": {"value": {"type": "string",
                                                                       "pattern": "^[0-9]+$"},
                                                             "containerName": {"type": "string"}},
                                              "additionalProperties": False}}}},
                            ],
                        },
                    },
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _META,
            "spec": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "podIdentity": {
                        "type": "object", "required": ["provider"], "additionalProperties": False,
                        "properties": {
                            "provider": {"enum": ["none", "azure-workload", "gcp", "aws",
                                                  "aws-eks", "aws-kiam"]},
                            "identityId": {"type": "string"},
                            "identityOwner": {"enum": ["keda", "workload"]},
                            "roleArn": {"type": "string"},
                        },
                    },
                    "secretTargetRef": {"type": "array"},
                    "env": {"type": "array"},
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _META,
            "spec": {
                "type": "object", "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "targetLabels": {"type": "array", "items": {"type": "string"}},
                    "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                    "selector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "matchLabels": _STRING_MAP,
                            "matchExpressions": {
                                "type": "array",
                                "items": {"type": "object", "required": ["key", "operator"],
                                          "additionalProperties": False,
                                          "properties": {
                                              "key": {"type": "string"},
                                              "operator": {"enum": ["In", "NotIn", "Exists",
                                                                    "DoesNotExist"]},
                                              "values": {"type": "array",
                                                         "items": {"type": "string"}}}},
                            },
                        },
                    },
                    "namespaceSelector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"},
                                       "matchNames": {"type": "array",
                                                      "items": {"type": "string"}}},
                    },
                    "endpoints": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "targetPort": {},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {"type": "string",
                                                  "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "honorLabels": {"type": "boolean"},
                                "relabelings": {"type": "array"},
                                "metricRelabelings": {"type": "array"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def split_crds(rendered, out):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    rest, problems, checked = [], [], 0
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        schema = CRD_SCHEMAS.get(key)
        if schema is None:
            rest.append(doc)
            continue
        checked += 1
        name = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
        for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"ERROR {rendered}: {name}: {path}: {error.message}")
    # The KEDA ScaledObject must target a Deployment that is rendered, and
    # must not coexist with an HPA on the same Deployment.
    deployments = {d["metadata"]["name"] for d in docs if d.get("kind") == "Deployment"}
    hpas = {d["spec"]["scaleTargetRef"]["name"] for d in docs
            if d.get("kind") == "HorizontalPodAutoscaler"}
    for doc in docs:
        if doc.get("kind") == "ScaledObject":
            target = doc["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                problems.append(f"ERROR {rendered}: ScaledObject targets missing Deployment {target}")
            if target in hpas:
                problems.append(f"ERROR {rendered}: {target} has both an HPA and a ScaledObject")
    # An OpenTelemetry collector config must only name receivers,
    # processors and exporters it defines (else the collector exits).
    for doc in docs:
        if doc.get("kind") != "ConfigMap" or "config.yaml" not in doc.get("data", {}):
            continue
        config = yaml.safe_load(doc["data"]["config.yaml"])
        for name, pipeline in config.get("service", {}).get("pipelines", {}).items():
            for part in ("receivers", "processors", "exporters"):
                for used in pipeline.get(part, []):
                    if used not in (config.get(part) or {}):
                        problems.append(f"ERROR {rendered}: ConfigMap/{doc['metadata']['name']}: "
                                        f"pipeline {name} uses undefined {part[:-1]} {used}")
    pathlib.Path(out).write_text(yaml.safe_dump_all(rest, sort_keys=False))
    for line in problems:
        print(line)
    print(f"custom resources: {checked} checked, {len(problems)} problems; "
          f"{len(rest)} built-in resources left for kubernetes-validate")
    return 1 if problems else 0


# ---------------------------------------------------------- session table --
def create_tables_definition(repo):
    """What DynamoStore::create_table creates, read from its source."""
    src = (repo / "services/session/src/dynamo.rs").read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', src))
    start = src.index("pub async fn create_table(")
    body = src[start:src.index("\n    }\n", start)]

    def const(name):
        return consts[name] if name in consts else name.strip('"')

    attributes = dict(re.findall(r'attribute\("(\w+)", ScalarAttributeType::(\w)\)', body))
    table_key = re.findall(r'\.key_schema\(key\("(\w+)", KeyType::(\w+)\)\)', body)
    billing = re.search(r"BillingMode::(\w+)", body).group(1)
    indexes = {}
    for match in re.finditer(
            r"\.global_secondary_indexes\(index\(\s*(\w+),\s*vec!\[(.*?)\],\s*([\w.()]+),?\s*\)\)",
            body, re.S):
        name, keys, projection = match.groups()
        keys = re.findall(r'key\("(\w+)", KeyType::(\w+)\)', keys)
        if projection.startswith("all"):
            proj = ("ALL", [])
        elif projection.startswith("due"):
            listed = re.search(r"const DUE_INDEX_ATTRIBUTES: \[&str; \d+\] = \[(.*?)\];", src, re.S)
            proj = ("INCLUDE", re.findall(r'"(\w+)"', listed.group(1)))
            if "ProjectionType::Include" not in body:
                raise SystemExit("create_table's due projection is no longer INCLUDE: update checks.py")
        else:
            raise SystemExit(f"unknown projection {projection!r} in create_table: update checks.py")
        indexes[const(name)] = ([(k, t.upper()) for k, t in keys], proj)
    ttl = re.search(r"\.update_time_to_live\(\).*?\.attribute_name\((\w+)\)", body, re.S)
    return {
        "billing": {"PayPerRequest": "PAY_PER_REQUEST", "Provisioned": "PROVISIONED"}[billing],
        "attributes": attributes,
        "key": [(k, t.upper()) for k, t in table_key],
        "indexes": indexes,
        "ttl": const(ttl.group(1)),
    }


def template_definition(repo):
    table = load_cfn(repo / "deploy/aws/parley-shared.yaml")["Resources"]["SessionTable"]["Properties"]
    indexes = {}
    for gsi in table["GlobalSecondaryIndexes"]:
        projection = gsi["Projection"]
        indexes[gsi["IndexName"]] = (
            [(k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"]],
            (projection["ProjectionType"], projection.get("NonKeyAttributes", [])),
        )
    ttl = table["TimeToLiveSpecification"]
    if not ttl.get("Enabled"):
        raise SystemExit("the template's session table has TTL disabled")
    return {
        "billing": table["BillingMode"],
        "attributes": {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]},
        "key": [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]],
        "indexes": indexes,
        "ttl": ttl["AttributeName"],
    }


def session_table(repo):
    code, cfn = create_tables_definition(repo), template_definition(repo)
    problems = [f"ERROR session table {field}: create-tables has {code[field]!r}, "
                f"parley-shared.yaml has {cfn[field]!r}"
                for field in code if code[field] != cfn[field]]
    table = load_cfn(repo / "deploy/aws/parley-shared.yaml")["Resources"]["SessionTable"]["Properties"]
    if not table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        problems.append("ERROR session table: point-in-time recovery is off")
    for line in problems:
        print(line)
    if not problems:
        print(f"session table matches create-tables: key {code['key']}, "
              f"{len(code['indexes'])} indexes ({', '.join(sorted(code['indexes']))}), "
              f"TTL on {code['ttl']}, {code['billing']}, PITR on")
    return 1 if problems else 0


# ---------------------------------------------------------- filter policy --
def filter_policy(repo):
    sub = load_cfn(repo / "deploy/aws/parley-shared.yaml")["Resources"]["StreamingSubscription"]
    condition, dropping, keeping = sub["Properties"]["FilterPolicy"]["Fn::If"]
    local = json.loads((repo / "deploy/local/streaming-filter-policy.json").read_text())
    problems = []
    if condition != "DropAgentTyping":
        problems.append(f"ERROR unexpected filter condition {condition}")
    if local != dropping:
        problems.append("ERROR deploy/local/streaming-filter-policy.json differs from "
                        "parley-shared.yaml's StreamingSubscription filter (DropAgentTyping)")
    for policy in (dropping, keeping):
        if policy.get("ParticipantRole") != [{"anything-but": ["CUSTOMER"]}]:
            problems.append("ERROR a filter policy keeps CUSTOMER items (echoes)")
        combos = 1
        for values in policy.values():
            combos *= len(values)
        if combos > 150:  # SNS's limit on value combinations
            problems.append(f"ERROR a filter policy has {combos} combinations (SNS allows 150)")
    typing = "application/vnd.amazonaws.connect.event.typing"
    if typing not in dropping["ContentType"][0]["anything-but"]:
        problems.append("ERROR the default filter policy does not drop typing events")
    for line in problems:
        print(line)
    if not problems:
        print("streaming filter policy: the local stack's is the template's; "
              "CUSTOMER items and typing dropped")
    return 1 if problems else 0


# ---------------------------------------------------------------- compose --
def compose(repo):
    path = repo / "deploy/docker-compose.yml"
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services", {})
    problems = []
    images_built = {s.get("image") for s in services.values() if s.get("build")}
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for target in (depends if isinstance(depends, list) else list(depends)):
            if target not in services:
                problems.append(f"ERROR {name}: depends on unknown service {target}")
        if isinstance(depends, dict):
            for target, spec in depends.items():
                if spec.get("condition") not in ("service_started", "service_healthy",
                                                  "service_completed_successfully"):
                    problems.append(f"ERROR {name}: bad depends_on condition for {target}")
                if spec.get("condition") == "service_healthy" and "healthcheck" not in services.get(target, {}):
                    problems.append(f"ERROR {name}: waits for {target} to be healthy; it has no healthcheck")
        for key, value in (service.get("environment") or {}).items():
            if not isinstance(value, str):
                problems.append(f"ERROR {name}: environment {key} is not a string ({value!r})")
        image = service.get("image", "")
        if image.startswith("parley/") and image not in images_built:
            problems.append(f"ERROR {name}: {image} is built by no service")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                if not (path.parent / source).exists():
                    problems.append(f"ERROR {name}: mounts missing {source}")
        build = service.get("build")
        if build:
            if not (path.parent / build["context"] / build["dockerfile"]).exists():
                problems.append(f"ERROR {name}: no Dockerfile at {build['dockerfile']}")
    # Endpoints the services are given must name compose services.
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            match = re.match(r"^https?://([a-z0-9-]+):\d+", str(value))
            if match and match.group(1) not in services:
                problems.append(f"ERROR {name}: {key} points at unknown host {match.group(1)}")
    for line in problems:
        print(line)
    if not problems:
        print(f"docker-compose.yml: {len(services)} services, dependencies, endpoints and "
              f"mounts consistent")
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    command, args = argv[1], argv[2:]
    if command == "split-crds":
        return split_crds(*args)
    repo = pathlib.Path(args[0]).resolve()
    return {"session-table": session_table, "filter-policy": filter_policy,
            "compose": compose}[command](repo)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
