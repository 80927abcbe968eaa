"""Plant-in-a-box: the demo plant's simulated presses, the whole plant core and a demo operator.

The demo plant file marks each press ``simulate: true``, so the runtime serves
each from a simulator of its protocol (:mod:`plantcore.simulation`); the demo
adds the embedded services where none answer, an operator to log in with,
(unless ``PLANTCORE_SECRETS_KEY`` is set) a secrets key of its own in the state
directory, and (unless ``PLANTCORE_GRAPHIQL`` or ``PLANTCORE_INTROSPECTION`` say
otherwise) GraphiQL and introspection, which ``plantcore run`` leaves off.

Like a real deployment, it runs ``plantcore db init`` on its database (with
``PLANTCORE_DB_ADMIN_URL``, or the superuser it found or started) and then the
plant core as the runtime role; the banner's audit command uses the auditor role.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from eventstore.roles import PlantRoles
from plantcore.db_init import initialise_database
from plantcore.embedded import free_port, services
from plantcore.operators import (
    DEMO_AUDIT_PUBLIC_KEY,
    Credentials,
    demo_audit_key,
    demo_operator,
    demo_secrets_key,
)
from plantcore.runtime import PlantRuntime, runtime_config
from plantcore.settings import Settings, retention_policy, secret_box
from plantcore.simulation import port_free
from plantfile.loader import read_plant_file

log = logging.getLogger(__name__)


# What the demo serves for trying the API, unless the settings say otherwise.
EXPLORING = ("graphiql", "introspection")


def explorable(settings: Settings) -> Settings:
    """``settings`` with GraphiQL and introspection on, where they are not set."""
    unset = [name for name in EXPLORING if name not in settings.model_fields_set]
    return settings.model_copy(update=dict.fromkeys(unset, True))


async def run_demo(settings: Settings) -> None:
    settings = explorable(settings)
    loaded = read_plant_file(settings.plant_file)
    for problem in loaded.problems:
        log.error("%s; that device is not started", problem)
    http_port = settings.http_port if port_free(settings.http_port) else free_port()

    box = (
        secret_box(settings)
        if settings.secrets_key or settings.secrets_key_file
        else demo_secrets_key(settings.state_dir)
    )
    with services(settings.state_dir) as urls:
        database = await initialise_database(
            settings.db_admin_url or urls.database_url,
            PlantRoles.named(settings.db_role_prefix),
            retention=retention_policy(settings),
        )
        config = runtime_config(
            settings,
            plant=loaded.plant,
            database_url=database.runtime_url,
            nats_url=urls.nats_url,
            redis_url=urls.redis_url,
            http_port=http_port,
            plant_file=settings.plant_file,  # edits apply while the demo runs
            secrets=box,
        )
        if config.audit_signing_key is None:
            config = replace(config, audit_signing_key=demo_audit_key(settings.state_dir))

        async def ready(runtime: PlantRuntime) -> None:
            assert runtime.app is not None
            credentials = demo_operator(runtime.app, box, settings.state_dir)
            _print_banner(
                runtime.api_url,
                credentials,
                list(runtime.simulations.lines.values()),
                audit_verify_command(settings, database.auditor_url),
            )

        with contextlib.suppress(KeyboardInterrupt):
            await PlantRuntime(config).run(ready)


def audit_verify_command(settings: Settings, database_url: str) -> str:
    """How to check the demo's log against its signed checkpoints."""
    key = settings.audit_public_key_file or settings.state_dir / DEMO_AUDIT_PUBLIC_KEY
    return (
        f"PLANTCORE_DATABASE_URL={database_url} .venv/bin/plantcore audit verify"
        f" --checkpoints {settings.audit_checkpoint_file} --public-key {key}"
    )


def _print_banner(api_url: str, operator: Credentials, presses: list[str], verify: str) -> None:
    lines = [
        "",
        "plantcore demo is running (Ctrl-C stops everything)",
        f"  HMI:            {api_url}/",
        f"  GraphQL:        {api_url}/graphql",
        f"  health:         {api_url}/health",
        f"  metrics:        {api_url}/metrics",
        f"  operator:       {operator.username}",
        f"  password:       {operator.password}",
        f"  TOTP secret:    {operator.totp_secret}",
        f"  enrol:          {operator.provisioning_uri()}",
        f"  audit:          {verify}",
        "  simulated presses:",
        *(f"    {line}" for line in presses),
        "",
    ]
    print("\n".join(lines), flush=True)
