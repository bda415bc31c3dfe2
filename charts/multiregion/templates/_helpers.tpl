{{/* Name of the chart, or nameOverride. */}}
{{- define "multiregion.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, shortened when the release already contains it. */}}
{{- define "multiregion.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "multiregion.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "multiregion.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "multiregion.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multiregion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "multiregion.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "multiregion.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "multiregion.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "multiregion.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Refuses combinations the schema cannot express. Included by deployment.yaml,
which every install renders.
*/}}
{{- define "multiregion.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: every replica would write (two writers fight over the same apps and traffic). Enable leaderElection or set replicaCount to 1." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled -}}
{{- fail "serviceMonitor.enabled and podMonitor.enabled are both true: Prometheus would scrape every pod twice. Enable one of them." -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled (the ServiceMonitor selects that Service); use podMonitor.enabled to scrape without a Service." -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int .Values.replicaCount) 1) (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d), or no node could ever be drained." (int $pdb.minAvailable) (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the chart makes a scraper identity (metrics.scraperToken, or a
PodMonitor given no token Secret, with metrics.authenticate); else empty.
*/}}
{{- define "multiregion.scraper" -}}
{{- $pm := .Values.podMonitor -}}
{{- if and .Values.metrics.authenticate (or .Values.metrics.scraperToken (and $pm.enabled (not $pm.tokenSecret.name))) -}}
true
{{- end -}}
{{- end -}}
