{{/*
The objects' name: the release's if it holds the chart's name ("quanteval-operator"), the chart's
if the release names its prefix ("quanteval", as manifests/install.yaml), else "<release>-<chart>".
*/}}
{{- define "quanteval-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else if hasPrefix (printf "%s-" .Release.Name) .Chart.Name -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels a Deployment selects its pods by: never change them (selectors are immutable). */}}
{{- define "quanteval-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "quanteval-operator.labels" -}}
{{ include "quanteval-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: quanteval
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "quanteval-operator.serviceAccountName" -}}
{{- default (include "quanteval-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "quanteval-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Whether the operator is confined to watchNamespaces (Roles, QUANTEVAL_NAMESPACES). */}}
{{- define "quanteval-operator.namespaced" -}}
{{- if eq .Values.rbac.scope "namespaces" -}}true{{- end -}}
{{- end -}}

{{/* Checks the schema cannot express with a readable message. */}}
{{- define "quanteval-operator.validate" -}}
{{- if and (ne .Values.rbac.scope "namespaces") .Values.watchNamespaces -}}
{{- fail (printf "watchNamespaces (%s) is only used with rbac.scope=namespaces; rbac.scope=cluster watches every namespace: set rbac.scope=namespaces or remove watchNamespaces" (join ", " .Values.watchNamespaces)) -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.liveness.port)) -}}
{{- fail (printf "metrics.port: %d is liveness.port, kopf's liveness endpoint; choose another port (default 8000)" (int .Values.metrics.port)) -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.name: required when serviceAccount.create is false (the operator runs as that existing ServiceAccount)" -}}
{{- end -}}
{{- end -}}

{{/*
The namespaced rules, in a ClusterRole (scope cluster) or in one Role per watched namespace
(scope namespaces). The least the operator needs: it watches QuantEvals, writes their status
(never their spec), creates Jobs, reads pods (termination messages) and posts Events. It never
reads Secrets: workers get credentials from Secrets referenced in their Job.
*/}}
{{- define "quanteval-operator.rules" -}}
- apiGroups: ["quanteval.io"]
  resources: ["quantevals"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["quanteval.io"]
  resources: ["quantevals/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["quanteval.io"]
  # Owner references with blockOwnerDeletion need update on the owner's finalizers.
  resources: ["quantevals/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Read, for a Job that has no pod: the Job controller's FailedCreate Event says why.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
{{- end -}}
