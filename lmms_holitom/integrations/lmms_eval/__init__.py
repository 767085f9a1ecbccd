"""Shared pieces of the lmms-eval models this package registers (settings, visuals, records).

The model classes themselves import torch and transformers; these modules stay light.
"""
