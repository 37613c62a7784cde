{{/*
TLS of broker and edge: a kubernetes.io/tls Secret mounted as a directory (never subPath, so that Kubernetes
updates the files on rotation and the edge reloads them), and for the broker the client CA bundle (mTLS).
Called with (dict "ctx" $ "component" "broker"|"edge").
*/}}

{{- define "crier.tlsDir" -}}/etc/crier/tls{{- end -}}
{{- define "crier.clientCaDir" -}}/etc/crier/client-ca{{- end -}}

{{/* The component's TLS settings, or an empty dict. */}}
{{- define "crier.tlsValues" -}}
{{- toYaml ((index .ctx.Values .component).tls | default dict) -}}
{{- end -}}

{{/* CRIER_TLS_* environment of the component, or nothing. */}}
{{- define "crier.tlsEnv" -}}
{{- $tls := include "crier.tlsValues" . | fromYaml -}}
{{- if $tls.secret }}
- name: CRIER_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "crier.tlsDir" .) | quote }}
- name: CRIER_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "crier.tlsDir" .) | quote }}
{{- if and $tls.clientCa $tls.clientCa.secret }}
- name: CRIER_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/ca.pem" (include "crier.clientCaDir" .) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volume mounts of the component's TLS files, or nothing. */}}
{{- define "crier.tlsVolumeMounts" -}}
{{- $tls := include "crier.tlsValues" . | fromYaml -}}
{{- if $tls.secret }}
- name: tls
  mountPath: {{ include "crier.tlsDir" . }}
  readOnly: true
{{- if and $tls.clientCa $tls.clientCa.secret }}
- name: client-ca
  mountPath: {{ include "crier.clientCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes of the component's TLS Secrets, or nothing. */}}
{{- define "crier.tlsVolumes" -}}
{{- $tls := include "crier.tlsValues" . | fromYaml -}}
{{- if $tls.secret }}
- name: tls
  secret:
    secretName: {{ $tls.secret | quote }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- if and $tls.clientCa $tls.clientCa.secret }}
- name: client-ca
  secret:
    secretName: {{ $tls.clientCa.secret | quote }}
    items:
      - key: {{ $tls.clientCa.key | quote }}
        path: ca.pem
{{- end }}
{{- end }}
{{- end -}}
