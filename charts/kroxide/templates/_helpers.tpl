{{/* Chart name. */}}
{{- define "kroxide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release full name. */}}
{{- define "kroxide.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "kroxide.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kroxide.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "kroxide.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kroxide.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels. */}}
{{- define "kroxide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kroxide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Service account name. */}}
{{- define "kroxide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kroxide.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces plugin ConfigMaps may come from. */}}
{{- define "kroxide.pluginNamespaces" -}}
{{- if .Values.config.pluginNamespaces -}}
{{- join "," .Values.config.pluginNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
The value at a dotted path of the values when it is set there, else the fallback, as YAML:
(list .Values "deployment.replicaCount" .Values.replicaCount). Lets a values file written for
kro's chart (its `deployment.*` and `config.*` keys) configure this one; kro's keys win.
*/}}
{{- define "kroxide.pick" -}}
{{- $m := index . 0 -}}
{{- $found := true -}}
{{- range (splitList "." (index . 1)) -}}
{{- if and $found (kindIs "map" $m) (hasKey $m .) -}}
{{- $m = index $m . -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}{{- toYaml $m -}}{{- else -}}{{- toYaml (index . 2) -}}{{- end -}}
{{- end -}}
