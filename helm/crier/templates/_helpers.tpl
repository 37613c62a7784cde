{{/*
Helpers shared by templates/broker/ and templates/edge/.
Component-scoped helpers take a dict: (dict "ctx" $ "component" "broker"|"edge").
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "crier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: <release>-<chart>, or the release name alone when it already contains the chart name.
Truncated so that "<fullname>-<component>-metrics" stays within the 63 characters of a DNS label.
*/}}
{{- define "crier.fullname" -}}
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

{{/* Name of one component's resources: <fullname>-<component>. */}}
{{- define "crier.componentFullname" -}}
{{- printf "%s-%s" (include "crier.fullname" .ctx) .component -}}
{{- end -}}

{{/* Chart label value: <chart>-<version>. */}}
{{- define "crier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: stable across upgrades, never add to these. */}}
{{- define "crier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crier.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set of one component's resources; commonLabels never override the chart's own labels. */}}
{{- define "crier.labels" -}}
{{- $own := include "crier.selectorLabels" . | fromYaml -}}
{{- $_ := set $own "helm.sh/chart" (include "crier.chart" .ctx) -}}
{{- $_ := set $own "app.kubernetes.io/version" (.ctx.Values.image.tag | default .ctx.Chart.AppVersion | trunc 63) -}}
{{- $_ := set $own "app.kubernetes.io/part-of" "crier" -}}
{{- $_ := set $own "app.kubernetes.io/managed-by" .ctx.Release.Service -}}
{{- toYaml (merge $own (.ctx.Values.commonLabels | default dict)) -}}
{{- end -}}

{{/* Labels of a component's pods: its labels plus podLabels (which cannot override them). */}}
{{- define "crier.podLabels" -}}
{{- $c := index .ctx.Values .component -}}
{{- toYaml (merge (include "crier.labels" . | fromYaml) ($c.podLabels | default dict)) -}}
{{- end -}}

{{/* Labels of resources that belong to no single component (the ServiceAccount). */}}
{{- define "crier.commonLabels" -}}
{{- $own := dict "helm.sh/chart" (include "crier.chart" .) "app.kubernetes.io/name" (include "crier.name" .) -}}
{{- $_ := set $own "app.kubernetes.io/instance" .Release.Name -}}
{{- $_ := set $own "app.kubernetes.io/version" (.Values.image.tag | default .Chart.AppVersion | trunc 63) -}}
{{- $_ := set $own "app.kubernetes.io/part-of" "crier" -}}
{{- $_ := set $own "app.kubernetes.io/managed-by" .Release.Service -}}
{{- toYaml (merge $own (.Values.commonLabels | default dict)) -}}
{{- end -}}

{{/* Container image reference; a digest wins over the tag. */}}
{{- define "crier.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount the pods run as. */}}
{{- define "crier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crier.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the edge's JWT secret (only ever referenced, never created). */}}
{{- define "crier.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "crier.fullname" .)) .Values.edge.jwt.existingSecret -}}
{{- end -}}

{{/*
Checks that values.schema.json cannot express. Included by every Deployment, so a bad combination fails the
render with a message naming the value to fix.
*/}}
{{- define "crier.validate" -}}
{{- $v := .Values -}}
{{- range (prepend ($v.redis.moreUrls | default list) $v.redis.url) -}}
{{- if regexMatch "^[a-z+]+://[^/@]*:[^/@]*@" . -}}
{{- fail "redis.url and redis.moreUrls must not contain a password: put it in a Secret and set redis.existingSecret (and redis.existingSecretPasswordKey)" -}}
{{- end -}}
{{- end -}}
{{- if lt (int $v.edge.terminationGracePeriodSeconds) (add (int $v.edge.drainSeconds) 5 | int) -}}
{{- fail (printf "edge.terminationGracePeriodSeconds (%d) must be at least edge.drainSeconds (%d) + 5, so a drain can finish before the pod is killed" (int $v.edge.terminationGracePeriodSeconds) (int $v.edge.drainSeconds)) -}}
{{- end -}}
{{- range $component := list "broker" "edge" -}}
{{- $a := (index $v $component).autoscaling -}}
{{- if and $a.enabled (lt (int $a.maxReplicas) (int $a.minReplicas)) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) must be >= %s.autoscaling.minReplicas (%d)" $component (int $a.maxReplicas) $component (int $a.minReplicas)) -}}
{{- end -}}
{{- include "crier.validateNoLiteralSecrets" (dict "values" (index $v $component) "component" $component) -}}
{{- end -}}
{{- include "crier.validateJwt" $v.edge.jwt -}}
{{- if and $v.broker.tls.clientCa.secret (not $v.broker.tls.secret) -}}
{{- fail "broker.tls.clientCa needs broker.tls.secret: client certificates are asked for in a TLS handshake" -}}
{{- end -}}
{{- end -}}

{{/*
Secrets only by reference: extraEnv must not carry a secret-looking variable as a literal `value`, and
extraArgs must not carry a secret flag. Each names the value to use instead.
*/}}
{{- define "crier.validateNoLiteralSecrets" -}}
{{- range .values.extraEnv -}}
{{- if and (regexMatch "SECRET|PASSWORD|TOKEN" .name) (hasKey . "value") -}}
{{- fail (printf "%s.extraEnv sets %s as a literal value: secrets only by reference (broker.apiToken.existingSecret, edge.jwt.existingSecret, redis.existingSecret, or valueFrom.secretKeyRef)" $.component .name) -}}
{{- end -}}
{{- end -}}
{{- range .values.extraArgs -}}
{{- if regexMatch "^--(api-token|admin-token|jwt-secret|redis-password)" . -}}
{{- fail (printf "%s.extraArgs must not carry a secret (%s): secrets only by reference (broker.apiToken.existingSecret, edge.jwt.existingSecret, redis.existingSecret)" $.component (regexFind "^--[a-z-]+" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The edge's key source: an HS* secret, or a JWKS URL with asymmetric algorithms and at most one CA source. */}}
{{- define "crier.validateJwt" -}}
{{- $hmac := 0 -}}
{{- range .algorithms -}}{{- if hasPrefix "HS" . -}}{{- $hmac = add1 $hmac -}}{{- end -}}{{- end -}}
{{- if and .jwks.url (gt $hmac 0) -}}
{{- fail "edge.jwt.jwks.url needs asymmetric edge.jwt.algorithms (RS*, PS*, ES*, EdDSA): JWKS keys are public keys" -}}
{{- end -}}
{{- if and (not .jwks.url) (lt $hmac (len .algorithms)) -}}
{{- fail "edge.jwt.algorithms other than HS* need edge.jwt.jwks.url: the JWT secret verifies HS* tokens only" -}}
{{- end -}}
{{- if and .jwks.ca.configMap .jwks.ca.secret -}}
{{- fail "edge.jwt.jwks.ca: set configMap or secret, not both" -}}
{{- end -}}
{{- if and (or .jwks.ca.configMap .jwks.ca.secret) (not (hasPrefix "https://" .jwks.url)) -}}
{{- fail "edge.jwt.jwks.ca needs an https:// edge.jwt.jwks.url" -}}
{{- end -}}
{{- end -}}

{{/* Where the edge reads the JWKS CA bundle. */}}
{{- define "crier.jwksCaDir" -}}/etc/crier/jwks-ca{{- end -}}

{{/* The edge's JWKS CA volume (from a ConfigMap or a Secret), or nothing. */}}
{{- define "crier.jwksCaVolume" -}}
{{- $ca := .Values.edge.jwt.jwks.ca -}}
{{- $items := list (dict "key" $ca.key "path" "ca.pem") -}}
{{- if $ca.configMap }}
- name: jwks-ca
  configMap:
    name: {{ $ca.configMap | quote }}
    items:
      {{- toYaml $items | nindent 6 }}
{{- else if $ca.secret }}
- name: jwks-ca
  secret:
    secretName: {{ $ca.secret | quote }}
    items:
      {{- toYaml $items | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The edge's key-source environment: the JWT secret, or the JWKS URL and its CA file. */}}
{{- define "crier.jwtEnv" -}}
{{- $jwt := .Values.edge.jwt -}}
- name: CRIER_JWT_ALGORITHMS
  value: {{ join "," $jwt.algorithms | quote }}
- name: CRIER_JWT_MAX_LIFETIME
  value: {{ $jwt.maxLifetime | quote }}
{{- if $jwt.jwks.url }}
- name: CRIER_JWT_JWKS_URL
  value: {{ $jwt.jwks.url | quote }}
{{- if or $jwt.jwks.ca.configMap $jwt.jwks.ca.secret }}
- name: CRIER_JWT_JWKS_CA_FILE
  value: {{ printf "%s/ca.pem" (include "crier.jwksCaDir" .) | quote }}
{{- end }}
{{- else }}
- name: CRIER_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "crier.jwtSecretName" . | quote }}
      key: {{ $jwt.existingSecretKey | quote }}
{{- end }}
{{- end -}}

{{/* Environment shared by broker and edge: Redis, partitions, logs, traces. */}}
{{- define "crier.commonEnv" -}}
{{- $v := .ctx.Values -}}
- name: CRIER_REDIS_URL
  value: {{ prepend ($v.redis.moreUrls | default list) $v.redis.url | join "," | quote }}
{{- if $v.redis.cluster }}
- name: CRIER_REDIS_CLUSTER
  value: "true"
{{- end }}
{{- if $v.redis.existingSecret }}
- name: CRIER_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret | quote }}
      key: {{ $v.redis.existingSecretPasswordKey | quote }}
{{- end }}
- name: CRIER_PARTITIONS
  value: {{ $v.partitions | int | toString | quote }}
- name: CRIER_MAX_CONVERSATION_ID_BYTES
  value: {{ $v.maxConversationIdBytes | int | toString | quote }}
- name: CRIER_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
- name: CRIER_ADMIN_LISTEN
  value: "0.0.0.0:9090"
{{- with (index $v .component).workerThreads }}
- name: CRIER_WORKER_THREADS
  value: {{ . | int | toString | quote }}
{{- end }}
{{- if $v.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "crier-%s" .component | quote }}
{{- end }}
{{- end -}}

{{/* Pod affinity: the component's `affinity` verbatim, else the podAntiAffinity preset over nodes. */}}
{{- define "crier.affinity" -}}
{{- $c := index .ctx.Values .component -}}
{{- if $c.affinity -}}
{{- toYaml $c.affinity -}}
{{- else if eq $c.podAntiAffinity "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "crier.selectorLabels" . | nindent 12 }}
{{- else if eq $c.podAntiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "crier.selectorLabels" . | nindent 10 }}
{{- end -}}
{{- end -}}

{{/*
Pod-spec fields identical for both components: account, security, scheduling, grace period.
Kubernetes service links are off: they would inject CRIER_*_PORT-style variables into the CRIER_ env namespace
that the binary reads its settings from.
*/}}
{{- define "crier.podSpecCommon" -}}
{{- $v := .ctx.Values -}}
{{- $c := index $v .component -}}
serviceAccountName: {{ include "crier.serviceAccountName" .ctx }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with (include "crier.affinity" .) }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
{{- if eq .component "edge" }}
{{- with (include "crier.jwksCaVolume" .ctx | trim) }}
  {{- . | nindent 2 }}
{{- end }}
{{- end }}
{{- with (include "crier.tlsVolumes" . | trim) }}
  {{- . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probe timing fields from a probe value block. */}}
{{- define "crier.probeTiming" -}}
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end -}}
