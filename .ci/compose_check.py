"""Checks compose.yaml's topology as compose resolves it (the output of
`docker-compose config`, read from stdin): the services and their roles, kyu's settings
(names from config/kyu.toml), Redis with AOF (fsync every second), and that
Prometheus and Grafana use the repository's files with the service names as addresses.

Run by .ci/compose.sh with Debian's python3 (PyYAML comes with docker-compose)."""

import json
import os
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def load_yaml(rel):
    return yaml.safe_load((ROOT / rel).read_text())


def mounts(svc):
    """{container path: host path} of a service's bind mounts."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            src, dst = parts[0], parts[1]
        else:
            src, dst = v.get("source"), v.get("target")
        if src and (src.startswith("/") or src.startswith(".")):
            out[dst] = Path(src)
        else:
            out[dst] = None  # a named volume
    return out


def host_path(svc, container_path):
    """The host file behind `container_path`, through the longest bind mount."""
    best = None
    for dst, src in mounts(svc).items():
        if src is None:
            continue
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            if best is None or len(dst) > len(best[0]):
                best = (dst, src)
    if best is None:
        return None
    rest = container_path[len(best[0]):].lstrip("/")
    return best[1] / rest if rest else best[1]


compose = yaml.safe_load(sys.stdin)
services = compose["services"]

# ---- the topology ----------------------------------------------------------------
expected = {"api-1", "api-2", "worker-1", "worker-2", "postgres", "redis", "prometheus", "grafana"}
check(set(services) == expected, f"services are {sorted(services)}, want {sorted(expected)}")
apis = sorted(s for s in services if s.startswith("api-"))
workers = sorted(s for s in services if s.startswith("worker-"))

keys = {k.upper() for k in tomllib.loads((ROOT / "config/kyu.toml").read_text())}
# Logging is set in the environment only (config/kyu.toml says so in a comment).
keys |= {"KYU_LOG", "KYU_LOG_FORMAT"}

for name in apis + workers:
    svc = services[name]
    role = "api" if name in apis else "worker"
    check(svc.get("command") == [role], f"{name}: command {svc.get('command')}, want [{role!r}]")
    check(Path(svc.get("build", {}).get("context", "")) == ROOT, f"{name}: builds the repository")
    check((ROOT / "Dockerfile").exists(), "Dockerfile exists")
    env = svc.get("environment", {})
    unknown = sorted(set(env) - keys)
    check(not unknown, f"{name}: settings not in config/kyu.toml: {unknown}")
    db = urlparse(env.get("DATABASE_URL", ""))
    check(db.scheme == "postgres" and db.hostname == "postgres", f"{name}: DATABASE_URL {db.geturl()}")
    redis = urlparse(env.get("REDIS_URL", ""))
    check(redis.scheme == "redis" and redis.hostname == "redis", f"{name}: REDIS_URL {redis.geturl()}")
    deps = svc.get("depends_on", {})
    for dep in ("postgres", "redis"):
        check(dep in deps, f"{name}: depends on {dep}")
    check(svc.get("restart") == "unless-stopped", f"{name}: restart unless-stopped")
    if role == "api":
        check("KYU_API_TOKENS" in env, f"{name}: KYU_API_TOKENS is passed (needed beyond loopback)")
        check(env.get("KYU_BIND") == "0.0.0.0:7878", f"{name}: KYU_BIND {env.get('KYU_BIND')}")
    else:
        check(not svc.get("ports"), f"{name}: a worker publishes no port")
        check(env.get("KYU_METRICS_BIND") == "0.0.0.0:9464", f"{name}: KYU_METRICS_BIND for Prometheus")

pg = services["postgres"]["environment"]
for name in apis + workers:
    db = urlparse(services[name]["environment"]["DATABASE_URL"])
    check(
        (db.username, db.password, db.path.lstrip("/"))
        == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]),
        f"{name}: DATABASE_URL matches the postgres service's user, password and database",
    )

# ---- Redis: AOF on, fsync every second, data on a volume ----------------
redis = services["redis"]
cmd = redis.get("command") or []
cmd = cmd if isinstance(cmd, list) else cmd.split()
for flag, value in (("--appendonly", "yes"), ("--appendfsync", "everysec")):
    check(flag in cmd and cmd[cmd.index(flag) + 1] == value, f"redis: {flag} {value} ({cmd})")
check("/data" in mounts(redis), "redis: /data is on a volume")
check(redis.get("restart") == "unless-stopped", "redis: restart unless-stopped")

# ---- Prometheus: the repository's config and rules, every node as a target ---------
prom = services["prometheus"]
flags = dict(a.split("=", 1) for a in prom.get("command", []) if "=" in a)
config_in = flags.get("--config.file", "/etc/prometheus/prometheus.yml")
config_host = host_path(prom, config_in)
check(config_host is not None and config_host.is_file(), f"prometheus: {config_in} is a repository file")
if config_host is not None and config_host.is_file():
    cfg = yaml.safe_load(config_host.read_text())
    targets = [t for sc in cfg["scrape_configs"] for s in sc["static_configs"] for t in s["targets"]]
    want = sorted([f"{a}:7878" for a in apis] + [f"{w}:9464" for w in workers])
    check(sorted(targets) == want, f"prometheus targets {targets}, want {want}")
    for rule in cfg.get("rule_files", []):
        in_container = os.path.normpath(str(Path(config_in).parent / rule))
        rule_host = host_path(prom, in_container)
        check(
            rule_host is not None and rule_host.resolve() == (ROOT / "dashboards/alerts.yaml").resolve(),
            f"prometheus: rule file {rule} is dashboards/alerts.yaml in the container ({rule_host})",
        )
    # The same as config/prometheus.yml but for targets and the rule path.
    base = load_yaml("config/prometheus.yml")
    for c in (cfg, base):
        c.pop("rule_files", None)
        for sc in c["scrape_configs"]:
            for s in sc["static_configs"]:
                s.pop("targets")
    check(cfg == base, "config/compose/prometheus.yml differs from config/prometheus.yml beyond targets")

# ---- Grafana: the repository's dashboard and provider, Prometheus by service name ---
graf = services["grafana"]
ds_host = host_path(graf, "/etc/grafana/provisioning/datasources/kyu.yaml")
prov_host = host_path(graf, "/etc/grafana/provisioning/dashboards/kyu.yaml")
check(ds_host is not None and ds_host.is_file(), "grafana: a data source file is provisioned")
check(
    prov_host is not None and prov_host.resolve() == (ROOT / "dashboards/provisioning.yaml").resolve(),
    "grafana: the dashboard provider is dashboards/provisioning.yaml",
)
if ds_host is not None and ds_host.is_file():
    ds = yaml.safe_load(ds_host.read_text())["datasources"]
    check([d["url"] for d in ds] == ["http://prometheus:9090"], f"grafana data source url {ds}")
    base = load_yaml("dashboards/provisioning.yaml")["datasources"]
    for d in ds + base:
        d.pop("url")
    check(ds == base, "the compose data source differs from dashboards/provisioning.yaml beyond url")
provider = load_yaml("dashboards/provisioning.yaml")["providers"][0]
dash_dir = host_path(graf, provider["options"]["path"])
check(
    dash_dir is not None and (dash_dir / "kyu-overview.json").is_file(),
    f"grafana: {provider['options']['path']} holds dashboards/kyu-overview.json",
)
if dash_dir is not None and (dash_dir / "kyu-overview.json").is_file():
    json.loads((dash_dir / "kyu-overview.json").read_text())

# ---- every bind mount exists ----------------------------------------------------------
for name, svc in services.items():
    for dst, src in mounts(svc).items():
        check(src is None or src.exists(), f"{name}: mount source {src} for {dst} is missing")

if failures:
    for f in failures:
        print(f"compose: {f}", file=sys.stderr)
    sys.exit(1)
print(f"compose: {len(services)} services checked ({', '.join(sorted(services))})")
