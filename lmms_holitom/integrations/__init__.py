"""Integrations of lmms-holitom with the frameworks people evaluate and serve with: `lmms_eval` (the plugin and its
models). Each integration imports its framework; nothing else in the package imports an integration."""
