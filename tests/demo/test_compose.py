"""docker-compose.yml's structure: builds exist, health is checked, dependencies are real."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support.procs import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# Distroless images: no shell or curl inside, so no healthcheck command can run there.
NO_SHELL = {"otel-collector", "jaeger"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_demo_world_is_all_there(compose):
    services = compose["services"]
    assert {"proxy", "legacy", "customers", "catalog", "redis", "otel-collector", "jaeger"} <= set(
        services
    )
    postgres = {
        name for name, s in services.items() if str(s.get("image", "")).startswith("postgres:")
    }
    assert len(postgres) == 3, "one PostgreSQL per service (legacy, customers, catalog)"


def test_every_service_has_an_image_or_a_dockerfile_that_exists(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            assert re.match(r"^[\w./-]+:[\w.-]+$", service.get("image", "")), (
                f"{name}: pin an image tag"
            )
            continue
        context = ROOT / (build["context"] if isinstance(build, dict) else build)
        dockerfile = context / (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        text = dockerfile.read_text()
        assert "HEALTHCHECK" in text and "USER " in text, (
            f"{name}: {dockerfile} needs HEALTHCHECK and a non-root USER"
        )
        for src in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.M):
            for part in src.split():
                assert (context / part).exists(), (
                    f"{name}: {dockerfile} copies {part}, which does not exist"
                )


def test_healthchecks_and_dependencies(compose):
    services = compose["services"]
    for name, service in services.items():
        if name not in NO_SHELL:
            check = service.get("healthcheck", {})
            assert check.get("test"), f"{name}: needs a healthcheck"
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        for dep, rule in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = rule["condition"]
            assert condition in {
                "service_healthy",
                "service_started",
                "service_completed_successfully",
            }
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy but it has no healthcheck"
                )
            elif dep not in NO_SHELL:
                pytest.fail(f"{name} should wait for {dep} to be healthy, not merely started")


def test_mounted_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name}: mounts {source}, which does not exist"


def test_the_proxy_route_table_in_compose_is_valid(compose):
    from proxy.config.loader import parse_config

    content = compose["configs"]["routes"]["content"].replace("$$", "$")
    config = parse_config(content, "docker-compose.yml#configs.routes")
    assert {u.name: u.url for u in config.upstreams.values()} == {
        "legacy": "http://legacy:8000", "customers": "http://customers:8101", "catalog": "http://catalog:8102",
    }  # fmt: skip
    assert config.listen.port == 8080 and config.admin.port == 8081
    assert "$.generated_at" in config.route("catalog-products").shadow.ignore
    services = compose["services"]
    for upstream in config.upstreams.values():
        host = re.match(r"https?://([^:/]+)", upstream.url).group(1)
        assert host in services, f"upstream {upstream.name} points at {host}, not a compose service"


def test_the_checks_can_fail():
    # A healthy-wait on a service without a check, or a dependency on a missing service,
    # is caught by the rules above.
    no_check = {"services": {"a": {"image": "x:1", "healthcheck": {"test": ["CMD", "true"]},
                                   "depends_on": {"b": {"condition": "service_healthy"}}},
                             "b": {"image": "y:1"}}}  # fmt: skip
    with pytest.raises(AssertionError, match="no healthcheck"):
        test_healthchecks_and_dependencies(no_check)
    missing = {"services": {"a": {"image": "x:1", "healthcheck": {"test": ["CMD", "true"]},
                                  "depends_on": {"c": {"condition": "service_started"}}}}}  # fmt: skip
    with pytest.raises(AssertionError, match="unknown service 'c'"):
        test_healthchecks_and_dependencies(missing)
