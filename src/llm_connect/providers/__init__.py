"""Providers: one small module per provider kind.

HTTP providers are ``ProviderSpec`` rows (see llm_connect.registry) driven by ``HTTPAdapter``;
``local`` (llama.cpp), ``claude_code`` (the ``claude`` CLI) and ``fake`` (scripted) are modules here.
"""
