{{/*
The components, in one table every template ranges over: the values key,
the binary (and image), the short name used in resource names, the port,
the gRPC service its health checks name (empty: the HTTP gateway), and the
name the gateway's client settings use (PARLEY_<CLIENT>_ENDPOINT).
*/}}
{{- define "parley.components" -}}
session:
  binary: parley-session
  short: session
  port: 50051
  grpcService: parley.session.v1.Session
  client: SESSION
transcoder:
  binary: parley-transcoder
  short: transcoder
  port: 50052
  grpcService: parley.transcoder.v1.Transcoder
  client: TRANSCODER
transcriber:
  binary: parley-transcriber
  short: transcriber
  port: 50053
  grpcService: parley.transcriber.v1.Transcriber
  client: TRANSCRIBER
connectRelay:
  binary: parley-connect-relay
  short: connect-relay
  port: 50054
  grpcService: parley.connect.v1.ConnectRelay
  client: CONNECT
whatsappSender:
  binary: parley-whatsapp-sender
  short: whatsapp-sender
  port: 50055
  grpcService: parley.whatsapp.v1.WhatsAppSender
  client: WHATSAPP
gateway:
  binary: parley-gateway
  short: gateway
  port: 8080
  grpcService: ""
  client: ""
{{- end }}

{{/* The chart's full name (release name when it already says parley). */}}
{{- define "parley.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "parley.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end }}

{{/* Labels shared by everything in the release. */}}
{{- define "parley.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "parley.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parley
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "short" "session"). */}}
{{- define "parley.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parley.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .short }}
{{- end }}

{{/* Resource name of one component: (dict "root" $ "short" "session"). */}}
{{- define "parley.componentName" -}}
{{- printf "%s-%s" (include "parley.fullname" .root) .short | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* ServiceAccount name of a component: (dict "root" $ "short" … "values" …). */}}
{{- define "parley.serviceAccountName" -}}
{{- if .values.serviceAccount.create -}}
{{- default (include "parley.componentName" .) .values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/*
The image of a binary: (dict "root" $ "binary" "parley-session"):
<registry>/<binary>@<digest> when image.digests names one, else :<tag>.
*/}}
{{- define "parley.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := .binary -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $img.registry) .binary -}}{{- end -}}
{{- $digest := index ($img.digests | default (dict)) .binary -}}
{{- if $digest -}}
{{- printf "%s@%s" $repo $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end }}

{{/*
Whether a component runs several replicas at some point (PDB, spread):
(dict "key" "session" "values" $componentValues "root" $).
*/}}
{{- define "parley.minReplicas" -}}
{{- if and (eq .key "session") (eq (toString .values.backend) "embedded") -}}
1
{{- else if and (eq .key "gateway") .root.Values.keda.enabled -}}
{{- .values.autoscaling.minReplicas -}}
{{- else if .values.autoscaling.enabled -}}
{{- .values.autoscaling.minReplicas -}}
{{- else -}}
{{- .values.replicas -}}
{{- end -}}
{{- end }}

{{/* Whether a component gets an HPA (KEDA makes the gateway's). */}}
{{- define "parley.hasHpa" -}}
{{- if and (eq .key "session") (eq (toString .values.backend) "embedded") -}}
{{- else if and (eq .key "gateway") .root.Values.keda.enabled -}}
{{- else if .values.autoscaling.enabled -}}
true
{{- end -}}
{{- end }}

{{/* The in-cluster gRPC endpoint of a component: (dict "root" $ "short" … "port" …). */}}
{{- define "parley.endpoint" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "parley.componentName" .) .root.Release.Namespace .port -}}
{{- end }}

{{/* Where spans go, or nothing. */}}
{{- define "parley.otlpEndpoint" -}}
{{- $o := .Values.otel -}}
{{- if $o.enabled -}}
{{- if $o.endpoint -}}
{{- $o.endpoint -}}
{{- else if $o.nodeAgent -}}
http://$(HOST_IP):4317
{{- else if $o.collector.create -}}
{{- printf "http://%s.%s.svc.cluster.local:4317" (include "parley.componentName" (dict "root" . "short" "otel-collector")) .Release.Namespace -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* PARLEY_TRANSCRIBE_MAX_STREAMS: the account quota split over the most replicas there can be. */}}
{{- define "parley.transcribeStreams" -}}
{{- $t := .Values.transcriber -}}
{{- $most := $t.replicas -}}
{{- if $t.autoscaling.enabled -}}{{- $most = $t.autoscaling.maxReplicas -}}{{- end -}}
{{- max 1 (div (int $t.accountStreamQuota) (int $most)) -}}
{{- end }}
