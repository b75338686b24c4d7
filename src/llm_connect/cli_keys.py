"""``llm-connect keys | teams | tenants``: manage the key store through a running gateway's admin API
(``--url`` + ``--admin-key`` / ``$LLM_CONNECT_ADMIN_KEY``) or the database itself (``--db`` or ``--config``).

Both ways give the same objects (the gateway's JSON), shown as tables (``--json`` prints the JSON). A change made
in the database directly reaches every running gateway within a second, as one made through the API does.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

__all__ = ["keys_app", "teams_app", "tenants_app"]

keys_app = typer.Typer(name="keys", help="API keys: create, list, show, update, rotate, revoke.", no_args_is_help=True)
teams_app = typer.Typer(
    name="teams", help="Teams of a tenant: create, list, show, update, delete.", no_args_is_help=True
)
tenants_app = typer.Typer(name="tenants", help="Tenants: create, list, show, update, delete.", no_args_is_help=True)

Url = Annotated[
    str | None, typer.Option("--url", envvar="LLM_CONNECT_URL", help="A running gateway (http://host:port).")
]
AdminKey = Annotated[
    str | None,
    typer.Option("--admin-key", envvar="LLM_CONNECT_ADMIN_KEY", help="The admin (or a tenant-admin) key, with --url."),
]
Db = Annotated[str | None, typer.Option("--db", help="The key store itself: an SQLite path or postgresql:// URL.")]
Config = Annotated[str | None, typer.Option("--config", "-c", help="Use the key store this config file names.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Models = Annotated[str | None, typer.Option("--models", help="Allowed models, comma-separated fnmatch patterns.")]
Rpm = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute.")]
BudgetTokens = Annotated[int | None, typer.Option("--budget-tokens", min=1, help="Token budget.")]
BudgetUsd = Annotated[str | None, typer.Option("--budget-usd", help="USD budget (a decimal).")]
BudgetPeriod = Annotated[str | None, typer.Option("--budget-period", help="daily | monthly | none (never resets).")]
Clear = Annotated[
    list[str] | None, typer.Option("--clear", help="Clear a field (models, rpm, tpm, budget, expires_at, team).")
]


class _Failed(Exception):
    pass


# ---------------------------------------------------------------------------------------------- backends


class _Http:
    """The admin API of a running gateway."""

    def __init__(self, url: str, admin_key: str | None) -> None:
        if not admin_key:
            raise _Failed("--url needs --admin-key (or $LLM_CONNECT_ADMIN_KEY)")
        self.url = url.rstrip("/")
        self.key = admin_key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
                raise _Failed(f"{err['message']} ({e.code} {err.get('code')})") from None
            except (ValueError, KeyError, TypeError):
                raise _Failed(f"HTTP {e.code} from {self.url}") from None
        except OSError as e:
            raise _Failed(f"cannot reach {self.url}: {e}") from None

    def list(self, kind: str, **query: str | None) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        q = urlencode({k: v for k, v in query.items() if v})
        return self.call("GET", f"/v1/admin/{kind}" + (f"?{q}" if q else ""))["data"]

    def get(self, kind: str, ident: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/admin/{kind}/{ident}")

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/v1/admin/{kind}", body)

    def update(self, kind: str, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", f"/v1/admin/{kind}/{ident}", body)

    def revoke(self, kind: str, ident: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/admin/{kind}/{ident}/revoke")

    def rotate(self, ident: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/admin/keys/{ident}/rotate")


class _Db:
    """The key store's database, with the admin API's validation and JSON (as the admin key)."""

    def __init__(self, url: str) -> None:
        from .keys import KeyStore

        self.store = KeyStore.open(url)

    def _do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from .keys import KeyStoreError

        try:
            return fn(*args, **kwargs)
        except KeyStoreError as exc:
            raise _Failed(f"{exc.message} ({exc.status_code} {exc.code})") from None

    @staticmethod
    def _body(model: Any, body: dict[str, Any]) -> Any:
        from pydantic import ValidationError

        try:
            return model.model_validate(body)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise _Failed(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") from None

    def _json(self, kind: str, rec: Any, plain: str | None = None) -> dict[str, Any]:
        from .server.admin_keys import key_json, team_json, tenant_json

        return key_json(rec, plain) if kind == "keys" else team_json(rec) if kind == "teams" else tenant_json(rec)

    def list(self, kind: str, **query: str | None) -> list[dict[str, Any]]:
        s = self.store
        recs = (
            s.list_keys(query.get("tenant"), query.get("team"))
            if kind == "keys"
            else s.list_teams(query.get("tenant"))
            if kind == "teams"
            else s.list_tenants()
        )
        return [self._json(kind, r) for r in recs]

    def get(self, kind: str, ident: str) -> dict[str, Any]:
        fn = {"keys": self.store.get_key, "teams": self.store.get_team, "tenants": self.store.get_tenant}[kind]
        return self._json(kind, self._do(fn, ident))

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        from .server import schemas_keys as m

        s = self.store
        if kind == "keys":
            b = self._body(m.KeyCreate, body)
            if b.tenant is None:
                raise _Failed("--tenant is required")
            rec, plain = self._do(
                s.create_key, b.tenant, b.name, team=b.team, role=b.role, models=b.models, rpm=b.rpm, tpm=b.tpm,
                budget=b.budget, expires_at=b.expires_at,
            )  # fmt: skip
            return self._json(kind, rec, plain)
        if kind == "teams":
            t = self._body(m.TeamCreate, body)
            if t.tenant is None:
                raise _Failed("--tenant is required")
            rec = self._do(
                s.create_team, t.tenant, t.name, team_id=t.id, models=t.models, rpm=t.rpm, tpm=t.tpm, budget=t.budget
            )
            return self._json(kind, rec)
        n = self._body(m.TenantCreate, body)
        rec = self._do(s.create_tenant, n.id, n.name, models=n.models, rpm=n.rpm, tpm=n.tpm, budget=n.budget)
        return self._json(kind, rec)

    def update(self, kind: str, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        from .server import schemas_keys as m

        model = {"keys": m.KeyUpdate, "teams": m.TeamUpdate, "tenants": m.TenantUpdate}[kind]
        b = self._body(model, body)
        fn = {"keys": self.store.update_key, "teams": self.store.update_team, "tenants": self.store.update_tenant}
        return self._json(kind, self._do(fn[kind], ident, **{f: getattr(b, f) for f in b.model_fields_set}))

    def revoke(self, kind: str, ident: str) -> dict[str, Any]:
        fn = {"keys": self.store.revoke_key, "teams": self.store.revoke_team, "tenants": self.store.revoke_tenant}
        return self._json(kind, self._do(fn[kind], ident))

    def rotate(self, ident: str) -> dict[str, Any]:
        rec, plain = self._do(self.store.rotate_key, ident)
        return self._json("keys", rec, plain)


def _backend(url: str | None, admin_key: str | None, db: str | None, config: str | None) -> _Http | _Db:
    given = [n for n, v in (("--url", url), ("--db", db), ("--config", config)) if v]
    if len(given) > 1:
        raise _Failed(f"give one of --url, --db, --config (got {', '.join(given)})")
    if url:
        return _Http(url, admin_key)
    if config:
        from .config import load_config

        kc = load_config(config).keys
        if kc.url is None:
            raise _Failed(f"{config} has no key store (auth is off or keys.url is off)")
        return _Db(kc.url)
    if db:
        return _Db(db)
    env = os.environ.get("LLM_CONNECT_CONFIG")
    if env:
        return _backend(None, None, None, env)
    raise _Failed("say where the keys are: --url (a running gateway), --db or --config")


def _run(work: Callable[[], None]) -> None:
    from .errors import LLMError

    try:
        work()
    except _Failed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except LLMError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


# ---------------------------------------------------------------------------------------------- output

_COLUMNS = {
    "keys": ("id", "name", "prefix", "tenant", "team", "role", "status", "last_used_at", "expires_at", "managed_by"),
    "teams": ("id", "name", "tenant", "budget", "rpm", "tpm", "models", "revoked_at", "managed_by"),
    "tenants": ("id", "name", "budget", "rpm", "tpm", "models", "revoked_at", "managed_by"),
}


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key == "budget":
        parts = [f"{v['tokens']} tok" if v.get("tokens") else "", f"${v['usd']}" if v.get("usd") else ""]
        return " + ".join(p for p in parts if p) + (f" / {v['period']}" if v.get("period") else "")
    if isinstance(v, list):
        return ", ".join(v)
    if key.endswith("_at"):
        return str(v).replace("T", " ")[:19]
    return str(v)


def _table(kind: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*_COLUMNS[kind])
    for r in rows:
        table.add_row(*(_cell(c, r.get(c)) for c in _COLUMNS[kind]))
    Console().print(table)


def _one(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("field", "value", show_header=False)
    for k, v in obj.items():
        if k not in ("key", "object"):
            table.add_row(k, _cell(k, v))
    console = Console()
    console.print(table)
    if obj.get("key"):
        console.print("[bold]key (shown once; only its sha256 is kept):[/bold]")
        typer.echo(obj["key"])


def _limits(
    models: str | None, rpm: int | None, tpm: int | None, tokens: int | None, usd: str | None, period: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if models is not None:
        out["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if rpm is not None:
        out["rpm"] = rpm
    if tpm is not None:
        out["tpm"] = tpm
    if tokens is not None or usd is not None:
        out["budget"] = {"tokens": tokens, "usd": usd, "period": period}
    elif period is not None:
        raise _Failed("--budget-period needs --budget-tokens and / or --budget-usd")
    return out


def _cleared(clear: list[str] | None) -> dict[str, None]:
    return {f: None for f in clear or ()}


def _expiry(expires_at: str | None, expires_in_days: float | None) -> dict[str, Any]:
    if expires_at is not None and expires_in_days is not None:
        raise _Failed("give --expires-at or --expires-in-days, not both")
    if expires_in_days is not None:
        from datetime import UTC, datetime, timedelta

        return {"expires_at": (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()}
    return {"expires_at": expires_at} if expires_at is not None else {}


# ---------------------------------------------------------------------------------------------- the commands
#
# Every command takes the connection options and --json; the ones that set limits take the same limit options.
# Commands are built from lists of parameters (typer reads a function's signature), so each option is
# declared once.


def _p(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _arg(name: str, metavar: str, help: str | None = None) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[str, typer.Argument(metavar=metavar, help=help)],
    )


def _str_opt(name: str, *flags: str, help: str | None = None) -> inspect.Parameter:
    return _p(name, Annotated[str | None, typer.Option(*flags, help=help)])


CONNECTION = [
    _p("url", Url),
    _p("admin_key", AdminKey),
    _p("db", Db),
    _p("config", Config),
    _p("as_json", AsJson, False),
]
LIMITS = [
    _p("models", Models),
    _p("rpm", Rpm),
    _p("tpm", Tpm),
    _p("budget_tokens", BudgetTokens),
    _p("budget_usd", BudgetUsd),
    _p("budget_period", BudgetPeriod),
]
EXPIRY = [
    _p("expires_at", Annotated[str | None, typer.Option("--expires-at", help="Refused from this ISO-8601 time.")]),
    _p(
        "expires_in_days",
        Annotated[float | None, typer.Option("--expires-in-days", min=0, help="Refused after N days.")],
    ),
]
CLEAR = [_p("clear", Clear)]
TENANT = _str_opt("tenant", "--tenant", "-t", help="The tenant.")
NAME = _str_opt("name", "--name", "-n", help="Display name.")


def _command(app: typer.Typer, name: str, doc: str, params: list[inspect.Parameter], work: Callable[..., None]) -> None:
    """Register ``name`` on ``app``: its options are ``params`` and the connection's; ``work(backend, **kw)``
    does it."""

    def command(**kw: Any) -> None:
        conn = {k: kw.pop(k) for k in ("url", "admin_key", "db", "config")}
        as_json = kw.pop("as_json")
        _run(lambda: work(_backend(**conn), as_json, **kw))

    command.__signature__ = inspect.Signature([*params, *CONNECTION])  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = f"{app.info.name}_{name}"
    app.command(name)(command)


def _body(kw: dict[str, Any], *fields: str) -> dict[str, Any]:
    """A request body from the command's options: the named fields that were given, the limits, the expiry
    and the fields to clear."""
    body: dict[str, Any] = {f: None for f in kw.get("clear") or ()}
    body.update({f: kw[f] for f in fields if kw.get(f) is not None})
    if "models" in kw:
        body.update(_limits(*(kw[f] for f in ("models", "rpm", "tpm", "budget_tokens", "budget_usd", "budget_period"))))
    if "expires_at" in kw:
        body.update(_expiry(kw["expires_at"], kw["expires_in_days"]))
    return body


def _register() -> None:
    key_id = _arg("key_id", "KEY_ID", "The key's id (the part after llmc- in its prefix).")
    role = _p("role", Annotated[str, typer.Option("--role", help="user | tenant_admin | admin")], "user")
    team = _str_opt("team", "--team", help="A team of the tenant.")
    _command(
        keys_app,
        "create",
        "Create an API key and print it (the only time it is shown).",
        [TENANT, NAME, team, role, *LIMITS, *EXPIRY],
        lambda b, j, **kw: _one(b.create("keys", _body(kw, "tenant", "name", "team", "role")), j),
    )
    _command(
        keys_app,
        "list",
        "List API keys (prefixes only, never the keys), with their status and last use.",
        [TENANT, team],
        lambda b, j, tenant, team: _table("keys", b.list("keys", tenant=tenant, team=team), j),
    )
    _command(keys_app, "show", "Show one API key.", [key_id], lambda b, j, key_id: _one(b.get("keys", key_id), j))
    _command(
        keys_app,
        "update",
        "Change an API key's name, team, limits, budget or expiry (live on every gateway within a second).",
        [key_id, NAME, team, *LIMITS, *EXPIRY, *CLEAR],
        lambda b, j, key_id, **kw: _one(b.update("keys", key_id, _body(kw, "name", "team")), j),
    )
    _command(
        keys_app,
        "rotate",
        "Give a key a new secret (printed once); the old one is refused at once.",
        [key_id],
        lambda b, j, key_id: _one(b.rotate(key_id), j),
    )
    _command(
        keys_app,
        "revoke",
        "Revoke a key: refused by every gateway within a second.",
        [key_id],
        lambda b, j, key_id: _one(b.revoke("keys", key_id), j),
    )

    required_name = _p(
        "name", Annotated[str, typer.Option("--name", "-n", help="Display name.")], inspect.Parameter.empty
    )
    team_id = _str_opt("id", "--id", help="The team id (default: generated).")
    _command(
        teams_app,
        "create",
        "Create a team in a tenant.",
        [required_name, TENANT, team_id, *LIMITS],
        lambda b, j, **kw: _one(b.create("teams", _body(kw, "name", "tenant", "id")), j),
    )
    _command(
        tenants_app,
        "create",
        "Create a tenant.",
        [_arg("id", "ID", "The tenant id."), NAME, *LIMITS],
        lambda b, j, **kw: _one(b.create("tenants", _body(kw, "id", "name")), j),
    )
    for app, kind, what in ((teams_app, "teams", "team"), (tenants_app, "tenants", "tenant")):
        ident = _arg("ident", "ID", f"The {what}'s id.")
        _command(
            app,
            "list",
            f"List {what}s.",
            [TENANT] if kind == "teams" else [],
            lambda b, j, kind=kind, **kw: _table(kind, b.list(kind, **kw), j),
        )
        _command(app, "show", f"Show one {what}.", [ident], lambda b, j, ident, kind=kind: _one(b.get(kind, ident), j))
        _command(
            app,
            "update",
            f"Change a {what}'s name, limits or budget (live on every gateway within a second).",
            [ident, NAME, *LIMITS, *CLEAR],
            lambda b, j, ident, kind=kind, **kw: _one(b.update(kind, ident, _body(kw, "name")), j),
        )
        _command(
            app,
            "delete",
            f"Revoke a {what}: every key of it is refused from now on (the record is kept).",
            [ident],
            lambda b, j, ident, kind=kind: _one(b.revoke(kind, ident), j),
        )


_register()
