#!/usr/bin/env python3
"""Writes parley-ecs.yaml, the CloudFormation template for Parley on ECS
Fargate, from the component table below.

Six task definitions and services differ only in a few settings; writing
them out by hand invites one of them to drift (a missing hardening flag, a
wrong port). This script holds the differences in one table and emits the
repetitive template; the output is checked in, deployed as is, and
deploy/validate.sh fails when it is stale (`generate.py --check`).

    python3 deploy/ecs/generate.py          # rewrite parley-ecs.yaml
    python3 deploy/ecs/generate.py --check  # exit 1 if it is out of date

Needs PyYAML (in deploy/validate.sh's virtual environment).
"""

import argparse
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "parley-ecs.yaml"

# ---------------------------------------------------------------------------
# The components. cpu/memory are Fargate task sizes (CPU units, MiB); each
# task also runs the collector sidecar. min/max are the autoscaling bounds.
# Where the figures come from (README.md "Performance"; deploy/README.md
# "Sizing"):
#   session      23,710 ClaimMessage/s and 32,132 lookups/s on 2 shared
#                cores -> ≥ 11,800 calls/s per core; 0.25 vCPU ≈ 2,900/s.
#   transcoder   14.66 ms CPU per 30 s note (2,045x real time per core):
#                0.5 vCPU ≈ 34 notes/s; one worker per half vCPU.
#   transcriber  ≤ 11 ms CPU per 30 s note (180.9 notes/s on 2 cores with
#                the emulator included): CPU is not its limit, the
#                account's Transcribe stream quota is (25 by default):
#                max 3 tasks x 8 streams = 24.
#   connect-relay, whatsapp-sender: not benchmarked, I/O-bound forwarders:
#                the smallest Fargate size.
#   gateway      not benchmarked end to end; one session append per
#                message (p50 0.53 ms measured) plus SQS calls; scaled on
#                backlog per task (GatewayBacklogPerTask) and CPU.
# ---------------------------------------------------------------------------
COMPONENTS = [
    dict(key="Session", short="session", binary="parley-session", port=50051,
         grpc="parley.session.v1.Session", cpu=256, memory=512, min=2, max=6,
         policy="SessionPolicyArn"),
    dict(key="Transcoder", short="transcoder", binary="parley-transcoder", port=50052,
         grpc="parley.transcoder.v1.Transcoder", cpu=512, memory=1024, min=2, max=8,
         policy=None),
    dict(key="Transcriber", short="transcriber", binary="parley-transcriber", port=50053,
         grpc="parley.transcriber.v1.Transcriber", cpu=256, memory=512, min=2, max=3,
         policy="TranscriberPolicyArn"),
    dict(key="ConnectRelay", short="connect-relay", binary="parley-connect-relay", port=50054,
         grpc="parley.connect.v1.ConnectRelay", cpu=256, memory=512, min=2, max=6,
         policy="ConnectRelayPolicyArn"),
    dict(key="WhatsAppSender", short="whatsapp-sender", binary="parley-whatsapp-sender",
         port=50055, grpc="parley.whatsapp.v1.WhatsAppSender", cpu=256, memory=512, min=2,
         max=6, policy="WhatsAppSenderPolicyArn"),
    dict(key="Gateway", short="gateway", binary="parley-gateway", port=8080, grpc=None,
         cpu=512, memory=1024, min=2, max=10, policy="GatewayPolicyArn"),
]

# Transcribe's default concurrent-stream quota, split over the most
# transcriber tasks there can be.
TRANSCRIBE_QUOTA = 25
TRANSCRIBER_MAX = next(c["max"] for c in COMPONENTS if c["key"] == "Transcriber")
TRANSCRIBER_STREAMS = max(1, TRANSCRIBE_QUOTA // TRANSCRIBER_MAX)

METRICS_PORT = 9464
CLIENT_NAMES = {  # PARLEY_<NAME>_ENDPOINT in the gateway
    "Session": "SESSION", "Transcoder": "TRANSCODER", "Transcriber": "TRANSCRIBER",
    "ConnectRelay": "CONNECT", "WhatsAppSender": "WHATSAPP",
}


# --------------------------------------------------------- YAML with tags --
class Tag:
    """A CloudFormation short-form intrinsic (!Ref, !Sub, !GetAtt, …)."""

    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def ref(name):
    return Tag("!Ref", name)


def sub(text):
    return Tag("!Sub", text)


def get_att(path):
    return Tag("!GetAtt", path)


def if_(condition, yes, no):
    return Tag("!If", [condition, yes, no])


def imported(export):
    """A value exported by the shared stack."""
    return {"Fn::ImportValue": sub("${SharedStackName}-" + export)}


NO_VALUE = ref("AWS::NoValue")


class Dumper(yaml.SafeDumper):
    """Plain YAML CloudFormation accepts: no anchors or aliases, and
    sequences indented under their keys."""

    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _represent_tag(dumper, tag):
    if isinstance(tag.value, list):
        return dumper.represent_sequence(tag.tag, tag.value, flow_style=False)
    style = "|" if "\n" in tag.value else None
    return dumper.represent_scalar(tag.tag, tag.value, style=style)


def _represent_str(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


Dumper.add_representer(Tag, _represent_tag)
Dumper.add_representer(str, _represent_str)


def env(pairs):
    return [{"Name": k, "Value": v} for k, v in pairs]


# ------------------------------------------------------------- collector --
# The ADOT collector sidecar. Every Parley process exports its spans, and
# its metrics, over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set
# (services/runtime/src/telemetry.rs, metrics.rs): spans go on to X-Ray,
# metrics to CloudWatch as embedded-metric-format logs (namespace Parley).
# /metrics (PARLEY_METRICS_LISTEN) stays served; SCRAPE_METRICS = True
# makes the collector scrape it instead of taking OTLP metrics (never both:
# every point would be counted twice). Config comes from the environment
# (AOT_CONFIG_CONTENT): no file, no parameter.
SCRAPE_METRICS = False

PROMETHEUS_RECEIVER = """\
  prometheus:
    config:
      scrape_configs:
        - job_name: parley
          scrape_interval: 30s
          static_configs:
            - targets: ["127.0.0.1:9464"]
"""

COLLECTOR_CONFIG = """\
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
${PROMETHEUS}processors:
  batch:
  resourcedetection:
    detectors: [env, ecs]
exporters:
  awsxray:
  awsemf:
    namespace: Parley
    log_group_name: "${LOG_GROUP}"
    log_stream_name: "{TaskId}"
    resource_to_telemetry_conversion:
      enabled: true
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resourcedetection, batch]
      exporters: [awsxray]
    metrics:
      receivers: [${METRICS_RECEIVER}]
      processors: [resourcedetection, batch]
      exporters: [awsemf]
"""


def collector_config():
    return (COLLECTOR_CONFIG
            .replace("${LOG_GROUP}", "/${NamePrefix}/ecs/metrics")
            .replace("${PROMETHEUS}", PROMETHEUS_RECEIVER if SCRAPE_METRICS else "")
            .replace("${METRICS_RECEIVER}", "prometheus" if SCRAPE_METRICS else "otlp"))


def collector_container(c):
    return {
        "Name": "otel-collector",
        "Image": ref("CollectorImage"),
        # Telemetry must never take the service down with it.
        "Essential": False,
        "ReadonlyRootFilesystem": True,
        "User": "10001",
        "Environment": [
            {"Name": "AOT_CONFIG_CONTENT",
             "Value": sub(collector_config())},
            {"Name": "OTEL_RESOURCE_ATTRIBUTES",
             "Value": f"service.namespace=parley,service.name={c['binary']}"},
        ],
        "LogConfiguration": log_configuration(c, "otel-collector"),
    }


def log_configuration(c, prefix):
    return {
        "LogDriver": "awslogs",
        "Options": {
            "awslogs-group": ref(f"{c['key']}LogGroup"),
            "awslogs-region": ref("AWS::Region"),
            "awslogs-stream-prefix": prefix,
            # Never block the service on CloudWatch Logs.
            "mode": "non-blocking",
            "max-buffer-size": "4m",
        },
    }


# ------------------------------------------------------------ containers --
def app_environment(c):
    pairs = [
        ("PARLEY_LISTEN", f"0.0.0.0:{c['port']}"),
        ("PARLEY_METRICS_LISTEN", f"0.0.0.0:{METRICS_PORT}"),
        ("PARLEY_LOG_FORMAT", "json"),
        ("RUST_LOG", ref("RustLog")),
        ("PARLEY_SHUTDOWN_GRACE_MS", "20000"),
        ("AWS_REGION", ref("AWS::Region")),
        ("OTEL_SERVICE_NAME", c["binary"]),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=parley"),
    ]
    key = c["key"]
    if key == "Session":
        pairs += [
            ("PARLEY_SESSION_BACKEND", "dynamodb"),
            ("PARLEY_SESSION_TABLE", imported("SessionTableName")),
        ]
    elif key == "Transcoder":
        # One conversion at a time per half vCPU (the task's CPU share).
        pairs += [("PARLEY_WORKERS", str(max(1, c["cpu"] // 512)))]
    elif key == "Transcriber":
        pairs += [("PARLEY_TRANSCRIBE_MAX_STREAMS", str(TRANSCRIBER_STREAMS))]
    elif key == "ConnectRelay":
        pairs += [
            ("PARLEY_CONNECT_INSTANCE_ID", imported("ConnectInstanceId")),
            ("PARLEY_CONNECT_CONTACT_FLOW_ID", ref("ContactFlowId")),
            ("PARLEY_CONNECT_STREAMING_TOPIC_ARN", imported("StreamingTopicArn")),
        ]
    elif key == "WhatsAppSender":
        pairs += [
            ("PARLEY_WHATSAPP_MEDIA_BUCKET", imported("MediaBucketName")),
            ("PARLEY_WHATSAPP_MEDIA_PREFIX", imported("MediaPrefix")),
            ("PARLEY_WHATSAPP_NUMBER_MAP", ref("WhatsAppNumberMap")),
            # The send ledger, through Service Connect.
            ("PARLEY_SESSION_ENDPOINT", "http://session:50051"),
        ]
    elif key == "Gateway":
        pairs += [
            ("PARLEY_DEFAULT_INSTANCE_ID", imported("ConnectInstanceId")),
            ("PARLEY_DEFAULT_CONTACT_FLOW_ID", ref("ContactFlowId")),
            ("PARLEY_INBOUND_QUEUE_URL", imported("InboundQueueUrl")),
            ("PARLEY_OUTBOUND_QUEUE_URL", imported("OutboundQueueUrl")),
            ("PARLEY_DEAD_LETTER_QUEUE_URL", imported("DeadLetterQueueUrl")),
        ]
        # Service Connect's proxy balances per request, so each client
        # keeps one connection to its local proxy (balance "single").
        for other in COMPONENTS:
            if other["key"] in CLIENT_NAMES:
                pairs.append((f"PARLEY_{CLIENT_NAMES[other['key']]}_ENDPOINT",
                              f"http://{other['short']}:{other['port']}"))
    result = env(pairs)
    if key == "Gateway":
        result.append(if_("HasRouting",
                          {"Name": "PARLEY_ROUTING_FILE",
                           "Value": "/etc/parley/routing/routing.toml"},
                          NO_VALUE))
    return result


def app_container(c):
    is_gateway = c["key"] == "Gateway"
    depends = [{"ContainerName": "otel-collector", "Condition": "START"}]
    container = {
        "Name": c["short"],
        "Image": sub("${ImageRegistry}/" + c["binary"] + ":${ImageTag}"),
        "Essential": True,
        "Command": ["serve"],
        "User": "65532:65532",
        "ReadonlyRootFilesystem": True,
        "PortMappings": [{
            "Name": "http" if is_gateway else "grpc",
            "ContainerPort": c["port"],
            "Protocol": "tcp",
            "AppProtocol": "http" if is_gateway else "grpc",
        }],
        "Environment": app_environment(c),
        # The process drains for PARLEY_SHUTDOWN_GRACE_MS after SIGTERM.
        "StopTimeout": 30,
        "LogConfiguration": log_configuration(c, c["short"]),
    }
    if is_gateway:
        container["DependsOn"] = if_(
            "HasRouting",
            depends + [{"ContainerName": "routing", "Condition": "SUCCESS"}],
            depends)
        container["MountPoints"] = if_(
            "HasRouting",
            [{"SourceVolume": "routing", "ContainerPath": "/etc/parley/routing",
              "ReadOnly": True}],
            NO_VALUE)
    else:
        container["DependsOn"] = depends
    return container


def routing_container(c):
    """Writes the routing file from the SSM parameter into a task volume
    before the gateway starts (ECS has no ConfigMaps)."""
    return {
        "Name": "routing",
        "Image": ref("RoutingInitImage"),
        "Essential": False,
        # Root only to write into the task's bind volume (created
        # root-owned); it runs for a moment, then exits.
        "User": "0",
        "ReadonlyRootFilesystem": True,
        "EntryPoint": ["sh", "-c"],
        "Command": ['printf "%s" "$PARLEY_ROUTING_TOML" > /etc/parley/routing/routing.toml'
                    ' && chmod 0444 /etc/parley/routing/routing.toml'],
        "Secrets": [{"Name": "PARLEY_ROUTING_TOML",
                     "ValueFrom": sub("arn:${AWS::Partition}:ssm:${AWS::Region}:"
                                      "${AWS::AccountId}:parameter${RoutingParameterName}")}],
        "MountPoints": [{"SourceVolume": "routing", "ContainerPath": "/etc/parley/routing",
                         "ReadOnly": False}],
        "LogConfiguration": log_configuration(c, "routing"),
    }


# ------------------------------------------------------------- resources --
def resources():
    r = {}
    r["Namespace"] = {
        "Type": "AWS::ServiceDiscovery::HttpNamespace",
        "Properties": {
            "Name": ref("ServiceConnectNamespace"),
            "Description": "Service Connect names of Parley's gRPC services",
        },
    }
    r["Cluster"] = {
        "Type": "AWS::ECS::Cluster",
        "Properties": {
            "ClusterName": sub("${NamePrefix}"),
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            "CapacityProviders": ["FARGATE"],
            "DefaultCapacityProviderStrategy": [{"CapacityProvider": "FARGATE", "Weight": 1}],
            "ServiceConnectDefaults": {"Namespace": get_att("Namespace.Arn")},
        },
    }
    r["TaskSecurityGroup"] = {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": "Parley tasks: gRPC between tasks, HTTPS to AWS APIs",
            "VpcId": ref("VpcId"),
            "SecurityGroupEgress": [
                {"Description": "AWS APIs (through NAT or VPC endpoints)",
                 "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"},
                {"Description": "Service Connect between Parley tasks",
                 "IpProtocol": "tcp", "FromPort": 50051, "ToPort": 50055,
                 "CidrIp": ref("VpcCidr")},
            ],
        },
    }
    r["TaskSecurityGroupIngress"] = {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {
            "Description": "gRPC from other Parley tasks (Service Connect)",
            "GroupId": ref("TaskSecurityGroup"),
            "SourceSecurityGroupId": ref("TaskSecurityGroup"),
            "IpProtocol": "tcp", "FromPort": 50051, "ToPort": 50055,
        },
    }
    r["ExecutionRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": "ECS pulls Parley images, writes logs, reads the routing parameter",
            "AssumeRolePolicyDocument": ecs_trust(),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                      "AmazonECSTaskExecutionRolePolicy")],
            "Policies": if_("HasRouting", [{
                "PolicyName": "routing-parameter",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Action": "ssm:GetParameters",
                        "Resource": sub("arn:${AWS::Partition}:ssm:${AWS::Region}:"
                                        "${AWS::AccountId}:parameter${RoutingParameterName}"),
                    }],
                },
            }], NO_VALUE),
        },
    }
    r["MetricsLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": sub("/${NamePrefix}/ecs/metrics"),
            "RetentionInDays": ref("LogRetentionDays"),
            "KmsKeyId": imported("DataKeyArn"),
        },
    }
    # X-Ray's PutTraceSegments, PutTelemetryRecords and sampling calls
    # support no resource-level permissions, so their Resource is "*"; the
    # log writes are scoped to the metrics log group.
    r["TelemetryPolicy"] = {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": "The collector sidecar: spans to X-Ray, metrics to CloudWatch (EMF)",
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "Traces", "Effect": "Allow",
                     "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                "xray:GetSamplingRules", "xray:GetSamplingTargets"],
                     "Resource": "*"},
                    {"Sid": "Metrics", "Effect": "Allow",
                     "Action": ["logs:CreateLogStream", "logs:PutLogEvents",
                                "logs:DescribeLogStreams"],
                     "Resource": [get_att("MetricsLogGroup.Arn"),
                                  sub("${MetricsLogGroup.Arn}:log-stream:*")]},
                ],
            },
        },
    }
    for c in COMPONENTS:
        k = c["key"]
        r[f"{k}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/${NamePrefix}/ecs/" + c["short"]),
                "RetentionInDays": ref("LogRetentionDays"),
                "KmsKeyId": imported("DataKeyArn"),
            },
        }
        policies = [ref("TelemetryPolicy")]
        if c["policy"]:
            policies.insert(0, imported(c["policy"]))
        r[f"{k}TaskRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"{c['binary']} (least privilege: deploy/aws/parley-shared.yaml)",
                "AssumeRolePolicyDocument": ecs_trust(),
                "ManagedPolicyArns": policies,
            },
        }
        containers = [app_container(c), collector_container(c)]
        task = {
            "Family": sub("${NamePrefix}-" + c["short"]),
            "Cpu": str(c["cpu"]),
            "Memory": str(c["memory"]),
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": ref("CpuArchitecture"),
                                "OperatingSystemFamily": "LINUX"},
            "ExecutionRoleArn": get_att("ExecutionRole.Arn"),
            "TaskRoleArn": get_att(f"{k}TaskRole.Arn"),
            "ContainerDefinitions": containers,
        }
        if k == "Gateway":
            containers.append(if_("HasRouting", routing_container(c), NO_VALUE))
            task["Volumes"] = if_("HasRouting", [{"Name": "routing"}], NO_VALUE)
        r[f"{k}TaskDefinition"] = {"Type": "AWS::ECS::TaskDefinition", "Properties": task}

        service_connect = {
            "Enabled": True,
            "Namespace": get_att("Namespace.Arn"),
            "LogConfiguration": log_configuration(c, "service-connect"),
        }
        if c["grpc"]:
            service_connect["Services"] = [{
                "PortName": "grpc",
                "DiscoveryName": c["short"],
                "ClientAliases": [{"Port": c["port"], "DnsName": c["short"]}],
                # Streams (transcriber, ConvertStream, attachments) outlive
                # any fixed per-request timeout: the services and clients
                # enforce their own deadlines.
                "Timeout": {"PerRequestTimeoutSeconds": 0, "IdleTimeoutSeconds": 3600},
            }]
        r[f"{k}Service"] = {
            "Type": "AWS::ECS::Service",
            "DependsOn": ["TaskSecurityGroupIngress"],
            "Properties": {
                "ServiceName": c["short"],
                "Cluster": ref("Cluster"),
                "TaskDefinition": ref(f"{k}TaskDefinition"),
                "LaunchType": "FARGATE",
                "DesiredCount": c["min"],
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "NetworkConfiguration": {"AwsvpcConfiguration": {
                    "AssignPublicIp": "DISABLED",
                    "SecurityGroups": [ref("TaskSecurityGroup")],
                    "Subnets": ref("SubnetIds"),
                }},
                "ServiceConnectConfiguration": service_connect,
                "PropagateTags": "SERVICE",
                "EnableECSManagedTags": True,
            },
        }
        r[f"{k}ScalableTarget"] = {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": sub("service/${Cluster}/${" + k + "Service.Name}"),
                "MinCapacity": c["min"],
                "MaxCapacity": c["max"],
            },
        }
        r[f"{k}CpuScaling"] = {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": sub("${NamePrefix}-" + c["short"] + "-cpu"),
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": ref(f"{k}ScalableTarget"),
                "TargetTrackingScalingPolicyConfiguration": {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                    "TargetValue": 70,
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
        }
    # The gateway also scales on its SQS backlog per running task: messages
    # waiting or in flight on both queues, divided by the tasks running.
    r["GatewayBacklogScaling"] = {
        "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
        "Properties": {
            "PolicyName": sub("${NamePrefix}-gateway-backlog"),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": ref("GatewayScalableTarget"),
            "TargetTrackingScalingPolicyConfiguration": {
                "CustomizedMetricSpecification": {"Metrics": [
                    sqs_metric("inVisible", "InboundQueueName", "ApproximateNumberOfMessagesVisible"),
                    sqs_metric("inFlight", "InboundQueueName", "ApproximateNumberOfMessagesNotVisible"),
                    sqs_metric("outVisible", "OutboundQueueName", "ApproximateNumberOfMessagesVisible"),
                    sqs_metric("outFlight", "OutboundQueueName", "ApproximateNumberOfMessagesNotVisible"),
                    {"Id": "tasks", "ReturnData": False, "MetricStat": {
                        "Metric": {"Namespace": "ECS/ContainerInsights",
                                   "MetricName": "RunningTaskCount",
                                   "Dimensions": [
                                       {"Name": "ClusterName", "Value": ref("Cluster")},
                                       {"Name": "ServiceName",
                                        "Value": get_att("GatewayService.Name")}]},
                        "Stat": "Average"}},
                    {"Id": "backlogPerTask", "ReturnData": True,
                     "Label": "SQS messages per gateway task",
                     "Expression": "(inVisible + inFlight + outVisible + outFlight) / IF(tasks < 1, 1, tasks)"},
                ]},
                "TargetValue": ref("GatewayBacklogPerTask"),
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    }
    return r


def sqs_metric(id_, queue_export, name):
    return {"Id": id_, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": "AWS/SQS", "MetricName": name,
                   "Dimensions": [{"Name": "QueueName", "Value": imported(queue_export)}]},
        "Stat": "Sum"}}


def ecs_trust():
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
                "ArnLike": {"aws:SourceArn": sub("arn:${AWS::Partition}:ecs:${AWS::Region}:"
                                                 "${AWS::AccountId}:*")},
            },
        }],
    }


def template():
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "Parley on ECS Fargate: a task definition and service per component, "
            "Service Connect for gRPC between them, a least-privilege task role each, "
            "CPU autoscaling (and SQS backlog per task for the gateway), CloudWatch "
            "logs, and an OpenTelemetry collector sidecar (spans to X-Ray, metrics to "
            "CloudWatch). Needs the parley-shared.yaml stack. Generated by "
            "generate.py: edit that, not this file."),
        "Parameters": {
            "SharedStackName": {"Type": "String", "Default": "parley-shared",
                                "Description": "The deployed parley-shared.yaml stack (its exports are imported)."},
            "NamePrefix": {"Type": "String", "Default": "parley",
                           "AllowedPattern": "^[a-z][a-z0-9-]{1,30}$",
                           "Description": "The shared stack's NamePrefix (log groups must fall under its key policy)."},
            "VpcId": {"Type": "AWS::EC2::VPC::Id"},
            "VpcCidr": {"Type": "String", "Default": "10.0.0.0/16",
                        "AllowedPattern": "^[0-9./]+$",
                        "Description": "The VPC's CIDR (tasks reach each other through Service Connect inside it)."},
            "SubnetIds": {"Type": "List<AWS::EC2::Subnet::Id>",
                          "Description": "Private subnets in two or more zones, with a route to AWS APIs (NAT or VPC endpoints)."},
            "ImageRegistry": {"Type": "String",
                              "Description": "Where the images are: <account>.dkr.ecr.<region>.amazonaws.com[/path]."},
            "ImageTag": {"Type": "String", "Default": "0.1.0"},
            "CpuArchitecture": {"Type": "String", "Default": "ARM64",
                                "AllowedValues": ["ARM64", "X86_64"],
                                "Description": "ARM64 (Graviton) is cheaper per vCPU; the images are built for both."},
            "ContactFlowId": {"Type": "String",
                              "AllowedPattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                              "Description": "The default inbound contact flow (the instance comes from the shared stack)."},
            "WhatsAppNumberMap": {"Type": "String", "Default": "",
                                  "Description": "Meta phone-number ids to EUM ids: 106540352242922=phone-number-id-…,…"},
            "RoutingParameterName": {"Type": "String", "Default": "",
                                     "AllowedPattern": "^$|^/[a-zA-Z0-9_./-]+$",
                                     "Description": "An SSM String parameter (/parley/routing) holding the gateway's routing TOML; empty: defaults only."},
            "ServiceConnectNamespace": {"Type": "String", "Default": "parley.internal"},
            "RustLog": {"Type": "String", "Default": "info"},
            "LogRetentionDays": {"Type": "Number", "Default": 30,
                                 "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365]},
            "GatewayBacklogPerTask": {
                "Type": "Number", "Default": 200, "MinValue": 10,
                "Description": "SQS messages (both queues, waiting or in flight) per gateway task before another starts; the same figure as the Helm chart's keda.queueLength."},
            "CollectorImage": {"Type": "String",
                               "Default": "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"},
            "RoutingInitImage": {"Type": "String",
                                 "Default": "public.ecr.aws/docker/library/busybox:1.36"},
        },
        "Conditions": {
            "HasRouting": Tag("!Not", [Tag("!Equals", [ref("RoutingParameterName"), ""])]),
        },
        "Resources": resources(),
        "Outputs": {
            "ClusterName": {"Value": ref("Cluster")},
            "ServiceConnectNamespaceArn": {"Value": get_att("Namespace.Arn")},
            "TaskSecurityGroupId": {"Value": ref("TaskSecurityGroup"),
                                    "Description": "Allow it on your VPC endpoints / load balancer"},
        },
    }


HEADER = """\
# GENERATED by deploy/ecs/generate.py — edit that script, then run it.
# Parley on ECS Fargate; deploy after deploy/aws/parley-shared.yaml:
#   aws cloudformation deploy --stack-name parley-ecs \\
#     --template-file deploy/ecs/parley-ecs.yaml --capabilities CAPABILITY_IAM \\
#     --parameter-overrides VpcId=vpc-… VpcCidr=10.0.0.0/16 SubnetIds=subnet-a,subnet-b \\
#       ImageRegistry=<account>.dkr.ecr.<region>.amazonaws.com ContactFlowId=…
"""


def render():
    return HEADER + yaml.dump(template(), Dumper=Dumper, sort_keys=False, width=100,
                              allow_unicode=True, default_flow_style=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when parley-ecs.yaml differs from what would be generated")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python3 {pathlib.Path(__file__).name}",
                  file=sys.stderr)
            return 1
        print(f"{OUTPUT.name} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
