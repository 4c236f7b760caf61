{{/*
Names and labels. Kept to the template functions deploy/tests/render_chart.py implements, which
CI uses to render the chart without helm.
*/}}

{{/* The chart name, 63 characters at most. */}}
{{- define "zigzag-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource name: release-chart, or the release name when it holds the chart name. */}}
{{- define "zigzag-serve.fullname" -}}
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

{{- define "zigzag-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "zigzag-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zigzag-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "zigzag-serve.labels" -}}
helm.sh/chart: {{ include "zigzag-serve.chart" . }}
{{ include "zigzag-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "zigzag-serve.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The model folder the server loads (--model). */}}
{{- define "zigzag-serve.modelPath" -}}
{{- if eq .Values.model.source "image" -}}
{{- .Values.model.imagePath -}}
{{- else if or (eq .Values.model.source "pvc") (eq .Values.model.source "initContainer") -}}
{{- printf "%s/%s" .Values.model.mountPath .Values.model.subDir -}}
{{- else -}}
{{- fail "model.source must be image, pvc or initContainer" -}}
{{- end -}}
{{- end -}}

{{- define "zigzag-serve.modelClaim" -}}
{{- .Values.model.pvc.existingClaim | default (printf "%s-model" (include "zigzag-serve.fullname" .)) -}}
{{- end -}}
