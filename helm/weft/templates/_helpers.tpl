{{/* Labels every object carries; selectors use only the stable subset (weft.selectorLabels). */}}
{{- define "weft.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "weft.sharedLabels" . }}
{{- end -}}

{{- define "weft.sharedLabels" -}}
app.kubernetes.io/part-of: weft
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* All labels of one component's objects: weft.labels plus its selector labels, each key once
(a repeated key is invalid YAML to strict parsers). Call with (dict "root" $ "component" "agent"). */}}
{{- define "weft.componentLabels" -}}
{{ include "weft.sharedLabels" .root }}
{{ include "weft.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "controller"). */}}
{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: weft-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* <registry>/weft-<component>:<tag>, the tag defaulting to the chart's appVersion. */}}
{{- define "weft.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{ printf "%s/weft-%s:%s" .root.Values.image.registry .component $tag }}
{{- end -}}

{{/* True (non-empty) when the controller runs on a throw-away development CA. */}}
{{- define "weft.devCa" -}}
{{- if not .Values.ca.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Container securityContext shared by both components before capabilities are added. */}}
{{- define "weft.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}
