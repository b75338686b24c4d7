"""The ``tracing:`` section: validated by its typed model, in the JSON Schema, and built into a Tracing."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install 'llm-connect[otel]'")

from llm_connect.config import ConfigError, parse_config
from llm_connect.config.sections import TracingSection, json_schema
from llm_connect.tracing import Tracing, build_tracing, tracer_provider


def test_defaults_are_off() -> None:
    cfg = parse_config({})
    assert cfg.tracing.enabled is False
    assert build_tracing(cfg.tracing) is None


def test_the_schema_describes_the_section() -> None:
    props = json_schema()["$defs"]["TracingSection"]["properties"]
    assert {"enabled", "service_name", "exporter", "endpoint", "protocol", "sample_ratio", "propagate_upstream"} <= set(
        props
    )
    assert set(TracingSection.model_fields) == set(props)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"exporter": "zipkin"}, "tracing.exporter"),
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"enabled": "maybe"}, "tracing.enabled"),
        ({"typo": 1}, "tracing.typo"),
    ],
)
def test_bad_values_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tracing": section})
    assert key in str(info.value)


def test_console_exporter_gets_a_provider_of_its_own() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    section = parse_config(
        {"tracing": {"enabled": "yes", "exporter": "CONSOLE", "service_name": "gw-a", "sample_ratio": "0.25"}}
    ).tracing
    tracing = build_tracing(section)
    assert isinstance(tracing, Tracing)
    assert build_tracing(section) is tracing  # one per section and process
    provider = tracer_provider(section)
    assert isinstance(provider, TracerProvider) and provider is not trace.get_tracer_provider()
    assert provider.resource.attributes["service.name"] == "gw-a"
    assert "0.25" in provider.sampler.get_description()
    provider.shutdown()


def test_none_exporter_uses_the_global_provider() -> None:
    from opentelemetry import trace

    section = TracingSection(enabled=True, exporter="none")
    assert tracer_provider(section) is trace.get_tracer_provider()
    assert build_tracing(section).propagate_upstream is True
    assert (
        build_tracing(TracingSection(enabled=True, exporter="none", propagate_upstream=False)).propagate_upstream
        is False
    )


def test_otlp_exporter_needs_its_package() -> None:
    section = TracingSection(enabled=True, exporter="otlp", endpoint="http://127.0.0.1:4318/v1/traces")
    try:
        installed = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:  # not even the opentelemetry.exporter namespace
        installed = False
    if installed:
        provider = tracer_provider(section)
        provider.shutdown()
        return
    with pytest.raises(ConfigError) as info:
        tracer_provider(section)
    assert "pip install opentelemetry-exporter-otlp-proto-http" in str(info.value)
    assert "tracing.exporter" in str(info.value)
