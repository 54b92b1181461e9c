{{/* Names */}}
{{- define "tessera.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.fullname" -}}
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
{{- end -}}

{{- define "tessera.cluster" -}}
{{- default (include "tessera.fullname" .) .Values.cluster -}}
{{- end -}}

{{- define "tessera.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tessera.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels. Call with (dict "ctx" $ "component" "worker"). */}}
{{- define "tessera.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tessera.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tessera.labels" -}}
{{ include "tessera.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: tessera
{{- end -}}

{{/* Images */}}
{{- define "tessera.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tessera.workerImage" -}}
{{- if eq .Values.worker.device "cuda" -}}
{{- printf "%s:%s%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) .Values.image.cudaTagSuffix -}}
{{- else -}}
{{- include "tessera.image" . -}}
{{- end -}}
{{- end -}}

{{/* Cluster wiring: etcd endpoints and NATS URL the binaries get. */}}
{{- define "tessera.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- $scheme := ternary "https" "http" .Values.tls.etcd.enabled -}}
{{- $full := include "tessera.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $urls = append $urls (printf "%s://%s-etcd-%d.%s-etcd-peer.%s.svc.%s:2379" $scheme $full $i $full $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $urls -}}
{{- else -}}
{{- required "etcd.endpoints is required when etcd.enabled is false" (join "," .Values.etcd.endpoints) -}}
{{- end -}}
{{- end -}}

{{- define "tessera.natsURL" -}}
{{- if .Values.nats.enabled -}}
{{- $scheme := ternary "tls" "nats" .Values.tls.nats.enabled -}}
{{- printf "%s://%s-nats.%s.svc.%s:4222" $scheme (include "tessera.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* Secrets */}}
{{- define "tessera.secretName" -}}
{{- printf "%s-secrets" (include "tessera.fullname" .) -}}
{{- end -}}

{{- define "tessera.apiKeysEnabled" -}}
{{- if or .Values.apiKey.existingSecret .Values.apiKey.keys -}}true{{- end -}}
{{- end -}}

{{- define "tessera.natsPasswordSecret" -}}
{{- default (include "tessera.secretName" .) .Values.nats.auth.existingSecret -}}
{{- end -}}

{{- define "tessera.natsPasswordKey" -}}
{{- ternary "password" "nats-password" (not (empty .Values.nats.auth.existingSecret)) -}}
{{- end -}}

{{/*
A volume with TLS material for kind (api|etcd|nats), laid out as ca.crt,
tls.crt, tls.key: the existing Secret as is, or the chart's Secret remapped.
Call with (dict "ctx" $ "kind" "etcd").
*/}}
{{- define "tessera.tlsVolume" -}}
{{- $t := index .ctx.Values.tls .kind -}}
- name: tls-{{ .kind }}
  secret:
    defaultMode: 0440
    {{- if $t.existingSecret }}
    secretName: {{ $t.existingSecret }}
    {{- else }}
    secretName: {{ include "tessera.secretName" .ctx }}
    items:
      {{- if ne .kind "api" }}
      - key: {{ .kind }}-ca.crt
        path: ca.crt
      {{- end }}
      - key: {{ .kind }}-tls.crt
        path: tls.crt
      - key: {{ .kind }}-tls.key
        path: tls.key
    {{- end }}
{{- end -}}

{{/* Client flags shared by coordinator and worker. */}}
{{- define "tessera.clientArgs" -}}
- --cluster=$(TESSERA_CLUSTER)
- --etcd=$(TESSERA_ETCD_ENDPOINTS)
- --nats=$(TESSERA_NATS_URL)
{{- if .Values.tls.etcd.enabled }}
- --etcd-ca=/etc/tessera/tls/etcd/ca.crt
- --etcd-cert=/etc/tessera/tls/etcd/tls.crt
- --etcd-key=/etc/tessera/tls/etcd/tls.key
{{- end }}
{{- if .Values.tls.nats.enabled }}
- --nats-ca=/etc/tessera/tls/nats/ca.crt
- --nats-cert=/etc/tessera/tls/nats/tls.crt
- --nats-key=/etc/tessera/tls/nats/tls.key
{{- end }}
{{- if .Values.nats.auth.enabled }}
- --nats-user={{ .Values.nats.auth.user }}
- --nats-password=$(NATS_PASSWORD)
{{- end }}
{{- end -}}

{{- define "tessera.clientEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if .Values.nats.auth.enabled }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tessera.natsPasswordSecret" . }}
      key: {{ include "tessera.natsPasswordKey" . }}
{{- end }}
{{- end -}}

{{- define "tessera.clientVolumeMounts" -}}
{{- if .Values.tls.etcd.enabled }}
- name: tls-etcd
  mountPath: /etc/tessera/tls/etcd
  readOnly: true
{{- end }}
{{- if .Values.tls.nats.enabled }}
- name: tls-nats
  mountPath: /etc/tessera/tls/nats
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tessera.clientVolumes" -}}
{{- if .Values.tls.etcd.enabled }}
{{ include "tessera.tlsVolume" (dict "ctx" . "kind" "etcd") }}
{{- end }}
{{- if .Values.tls.nats.enabled }}
{{ include "tessera.tlsVolume" (dict "ctx" . "kind" "nats") }}
{{- end }}
{{- end -}}

{{/* The model: volume, mount and (source: init) the copying init container. */}}
{{- define "tessera.modelVolume" -}}
{{- $m := .Values.model -}}
{{- if eq $m.source "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ required "model.pvc.claimName is required when model.source is pvc" $m.pvc.claimName }}
    readOnly: {{ $m.pvc.readOnly }}
{{- else if eq $m.source "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.hostPath.path is required when model.source is hostPath" $m.hostPath.path }}
    type: {{ $m.hostPath.type }}
{{- else if eq $m.source "init" }}
- name: model
  emptyDir:
    {{- with $m.init.medium }}
    medium: {{ . }}
    {{- end }}
    {{- with $m.init.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "tessera.modelMount" -}}
{{- if ne .Values.model.source "image" }}
- name: model
  mountPath: {{ .Values.model.root }}
  {{- if eq .Values.model.source "pvc" }}
  readOnly: {{ .Values.model.pvc.readOnly }}
  {{- with .Values.model.pvc.subPath }}
  subPath: {{ . }}
  {{- end }}
  {{- else if eq .Values.model.source "hostPath" }}
  readOnly: true
  {{- end }}
{{- end }}
{{- end -}}

{{- define "tessera.modelInit" -}}
{{- if eq .Values.model.source "init" }}
{{- $i := .Values.model.init }}
- name: fetch-model
  image: {{ required "model.init.image is required when model.source is init" $i.image }}
  imagePullPolicy: {{ $i.pullPolicy }}
  command:
    {{- toYaml (required "model.init.command is required when model.source is init" $i.command) | nindent 4 }}
  {{- with $i.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $i.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $i.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $i.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: model
      mountPath: {{ .Values.model.root }}
{{- end }}
{{- end -}}

{{/* Pod placement: (dict "v" .Values.worker) */}}
{{- define "tessera.placement" -}}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "tessera.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
