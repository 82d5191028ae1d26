{{/*
Names and labels. Per-service helpers take a dict built in each template:
  root: the chart's root context   name, component: the service key (ingest, normalizer, ...)
  svc: the service's values        facts: its entry in files/catalog.yaml
*/}}

{{- define "parley.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "parley.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "parley.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "parley.commonLabels" -}}
helm.sh/chart: {{ include "parley.chart" . }}
app.kubernetes.io/name: {{ include "parley.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | toString | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parley
{{- end -}}

{{/* Selector labels of one component (a service or the topics job). Arguments: root, component. */}}
{{- define "parley.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parley.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "parley.labels" -}}
{{ include "parley.commonLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The object name of a component: <fullname>-<component>. Arguments: root, component. */}}
{{- define "parley.componentName" -}}
{{- printf "%s-%s" (include "parley.fullname" .root | trunc 52 | trimSuffix "-") .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "parley.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "parley.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "parley.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/* files/catalog.yaml as a dict. */}}
{{- define "parley.catalog" -}}
{{- .Files.Get "files/catalog.yaml" -}}
{{- end -}}


{{/* A topic's name inside config.topicNamespace. Arguments: root, topic. */}}
{{- define "parley.topic" -}}
{{- if .root.Values.config.topicNamespace -}}
{{- printf "%s.%s" .root.Values.config.topicNamespace .topic -}}
{{- else -}}
{{- .topic -}}
{{- end -}}
{{- end -}}

{{/* A subscriber's consumer group id, as ServiceSettings.group_id builds it. Arguments: root, subscriber. */}}
{{- define "parley.groupId" -}}
{{- printf "%s.%s" .root.Values.config.consumerGroupPrefix .subscriber -}}
{{- end -}}

{{/* A number as Kubernetes and pydantic want it: integers without exponent or decimal point. */}}
{{- define "parley.number" -}}
{{- $v := . -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}
{{- int64 $v -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: set, or derived from the shutdown bound and the preStop sleep. */}}
{{- define "parley.terminationGracePeriodSeconds" -}}
{{- $t := .Values.termination -}}
{{- $shutdown := float64 .Values.config.shutdownTimeoutSeconds -}}
{{- $floor := addf $shutdown (float64 $t.preStopSleepSeconds) -}}
{{- if kindIs "invalid" $t.terminationGracePeriodSeconds -}}
{{- add (int64 (ceil $shutdown)) $t.preStopSleepSeconds $t.graceMarginSeconds -}}
{{- else if le (float64 $t.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "termination.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + config.shutdownTimeoutSeconds (%v)" $t.terminationGracePeriodSeconds $floor) -}}
{{- else -}}
{{- int64 $t.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* Does this service scale with KEDA? Arguments: the per-service context. Prints "true" or nothing. */}}
{{- define "parley.kedaEnabled" -}}
{{- if and .root.Values.keda.enabled .svc.keda .svc.keda.enabled .facts.subscribers -}}true{{- end -}}
{{- end -}}

{{/* Does this service scale with a CPU HorizontalPodAutoscaler? */}}
{{- define "parley.hpaEnabled" -}}
{{- if and .svc.autoscaling .svc.autoscaling.enabled -}}
{{- if include "parley.kedaEnabled" . -}}
{{- fail (printf "services.%s: autoscaling and keda cannot both scale one Deployment" .name) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The useful ceiling of a service's replicas: for each consumer group it runs, the partitions
of its topic divided among the consumers one pod runs for that group (rounded up; a subscriber
with `consumersSetting` runs as many as that env variable says, else one); the largest of those.
A replica beyond it would get no partition of any group. */}}
{{- define "parley.maxPartitions" -}}
{{- $catalog := include "parley.catalog" .root | fromYaml -}}
{{- $env := .svc.env | default dict -}}
{{- $max := 0 -}}
{{- range .facts.subscribers -}}
{{- $p := int (get $catalog.partitions .topic) -}}
{{- $c := 1 -}}
{{- if .consumersSetting -}}
{{- $c = int (get $env .consumersSetting | default .consumers) -}}
{{- end -}}
{{- $pods := div (add $p (sub $c 1)) $c -}}
{{- if gt $pods $max -}}{{- $max = $pods -}}{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* The network policy peers allowed into a service (global and its own). */}}
{{- define "parley.ingressFrom" -}}
{{- $peers := concat (.root.Values.networkPolicy.ingressFrom | default list) (.svc.networkPolicy.ingressFrom | default list) -}}
{{- if $peers -}}
{{- toYaml $peers -}}
{{- end -}}
{{- end -}}

{{/* One NetworkPolicy egress rule from {to, ports} values ("to" left out when empty: any destination). */}}
{{- define "parley.egressRule" -}}
{{- with .to }}
to:
  {{- toYaml . | nindent 2 }}
{{- end }}
ports:
  {{- toYaml .ports | nindent 2 }}
{{- end -}}

{{/* The non-secret PARLEY_* settings of one service (its ConfigMap's data). Arguments: root, name, svc, facts. */}}
{{- define "parley.configData" -}}
{{- $root := .root -}}{{- $name := .name -}}{{- $svc := .svc -}}{{- $facts := .facts -}}
{{- $c := $root.Values.config -}}
PARLEY_HTTP_HOST: "0.0.0.0"
PARLEY_HTTP_PORT: {{ $svc.port | toString | quote }}
PARLEY_KAFKA_BOOTSTRAP_SERVERS: {{ $c.kafkaBootstrapServers | quote }}
PARLEY_TOPIC_NAMESPACE: {{ $c.topicNamespace | quote }}
PARLEY_CONSUMER_GROUP_PREFIX: {{ $c.consumerGroupPrefix | quote }}
PARLEY_LOG_LEVEL: {{ $c.logLevel | quote }}
PARLEY_LOG_FORMAT: {{ $c.logFormat | quote }}
PARLEY_SHUTDOWN_TIMEOUT_S: {{ include "parley.number" $c.shutdownTimeoutSeconds | quote }}
PARLEY_KAFKA_ACK_TIMEOUT_S: {{ include "parley.number" $c.kafkaAckTimeoutSeconds | quote }}
PARLEY_CONSUMER_MAX_ATTEMPTS: {{ include "parley.number" $c.consumerMaxAttempts | quote }}
PARLEY_CONSUMER_RETRY_BACKOFF_S: {{ include "parley.number" $c.consumerRetryBackoffSeconds | quote }}
PARLEY_CONSUMER_RETRY_BACKOFF_MAX_S: {{ include "parley.number" $c.consumerRetryBackoffMaxSeconds | quote }}
PARLEY_METRICS_PORT: {{ $c.metricsPort | toString | quote }}
PARLEY_HTTP_MAX_BODY_BYTES: {{ include "parley.number" $c.httpMaxBodyBytes | quote }}
PARLEY_HTTP_LIMIT_CONCURRENCY: {{ include "parley.number" $c.httpLimitConcurrency | quote }}
PARLEY_HTTP_KEEP_ALIVE_TIMEOUT_S: {{ include "parley.number" $c.httpKeepAliveTimeoutSeconds | quote }}
PARLEY_HTTP_MAX_HEADER_BYTES: {{ include "parley.number" $c.httpMaxHeaderBytes | quote }}
PARLEY_HTTP_FORWARDED_ALLOW_IPS: {{ $c.httpForwardedAllowIps | quote }}
{{- if $facts.api }}
{{- with $root.Values.auth.jwksUrl }}
PARLEY_JWT_JWKS_URL: {{ . | quote }}
{{- end }}
{{- with $root.Values.auth.audience }}
PARLEY_JWT_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with $root.Values.auth.issuer }}
PARLEY_JWT_ISSUER: {{ . | quote }}
{{- end }}
{{- end }}
{{- if and $facts.appId (not $facts.providers) }}
{{- with $root.Values.providers.metaAppId }}
PARLEY_META_APP_ID: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $facts.providers }}
{{- $p := $root.Values.providers }}
{{- with $p.metaAppId }}
PARLEY_META_APP_ID: {{ . | quote }}
{{- end }}
{{- with $p.graphBaseUrl }}
PARLEY_GRAPH_BASE_URL: {{ . | quote }}
{{- end }}
{{- with $p.graphApiVersion }}
PARLEY_GRAPH_API_VERSION: {{ . | quote }}
{{- end }}
{{- with $p.xApiBaseUrl }}
PARLEY_X_API_BASE_URL: {{ . | quote }}
{{- end }}
{{- with $p.xClientId }}
PARLEY_X_CLIENT_ID: {{ . | quote }}
{{- end }}
{{- if and $p.xWebhookId (eq $name "onboarding") }}
PARLEY_X_WEBHOOK_ID: {{ $p.xWebhookId | quote }}
{{- end }}
{{- if and $p.xActivityWebhookId (eq $name "onboarding") }}
PARLEY_X_ACTIVITY_WEBHOOK_ID: {{ $p.xActivityWebhookId | quote }}
{{- end }}
{{- end }}
{{- $reports := $root.Values.services.reports }}
{{- if and (eq $name "onboarding") $reports $reports.enabled (not (hasKey ($svc.env | default dict) "PARLEY_CONSOLE_REPORTS_URL")) }}
{{- /* the console's Reports page asks the reports service inside the cluster (docs/console.md) */}}
PARLEY_CONSOLE_REPORTS_URL: {{ printf "http://%s:%v" (include "parley.componentName" (dict "root" $root "component" "reports")) $reports.port | quote }}
{{- end }}
{{- range $k, $v := merge (dict) ($svc.env | default dict) ($c.extraEnv | default dict) }}
{{- if not (kindIs "invalid" $v) }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}
