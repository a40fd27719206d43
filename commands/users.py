"""``cxhub users``: console accounts (add, list, disable / enable, passwd, link, logout) and their
API tokens (``users token create / revoke / list``). See docs/console.md."""

# no "from __future__ import annotations": Typer evaluates the annotations, and ConfigOpt etc. are
# imported inside register() (cli imports this module), so they must be evaluated right there.

import json
import sys
from contextlib import contextmanager
from typing import Annotated

import typer

#: who the audit log names for changes made from the command line
ACTOR = "cli"


def register(app: typer.Typer) -> None:
    """Add the ``users`` commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt, console, dump_json, err, fail, handled, runtime

    users_app = typer.Typer(
        help="Console users: accounts, roles and units, platform sign-in links, sessions, API tokens.",
        no_args_is_help=True,
    )
    token_app = typer.Typer(help="API tokens (Authorization: Bearer cxt_...) for scripts.", no_args_is_help=True)
    users_app.add_typer(token_app, name="token")
    app.add_typer(users_app, name="users")

    def accounts_of(rt):  # type: ignore[no-untyped-def]
        from hub.console.accounts import Accounts

        return Accounts(rt.store)

    def user_of(accounts, login: str):  # type: ignore[no-untyped-def]
        from hub.console.accounts import AccountError

        try:
            return accounts.require_user(login)
        except AccountError as exc:
            raise fail(str(exc)) from None

    @contextmanager
    def the_user(config, login: str):  # type: ignore[no-untyped-def]
        """The runtime, the accounts and LOGIN's account (a clear error when there is none)."""
        with runtime(config, features=()) as rt:
            accounts = accounts_of(rt)
            yield rt, accounts, user_of(accounts, login)

    @users_app.command("add")
    def users_add(
        login: Annotated[str, typer.Argument(help="The sign-in name (no spaces).")],
        role: Annotated[
            str,
            typer.Option(help="admin, integrator, hq_analyst, region_manager, district_manager, store_manager, agent."),
        ],
        unit: Annotated[
            str | None, typer.Option(help="The region, district or store id the role needs (none for HQ roles).")
        ] = None,
        name: Annotated[str | None, typer.Option(help="The name shown in the console.")] = None,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the initial password from stdin (one line).")
        ] = False,
        no_password: Annotated[
            bool, typer.Option("--no-password", help="No password: signs in only through a linked platform.")
        ] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Add a console user. Prints a generated initial password once (unless --password-stdin or
        --no-password); it must be changed at the first sign-in."""
        from hub.console.accounts import AccountError, generate_password
        from hub.console.app import org_tree
        from hub.console.scope import ScopeError

        if password_stdin and no_password:
            raise fail("--password-stdin and --no-password exclude each other")
        given = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
        password = None if no_password else (given if given is not None else generate_password())
        with runtime(config) as rt:
            try:
                user = accounts_of(rt).add_user(
                    login,
                    role=role,
                    unit=unit,
                    tree=org_tree(rt),
                    display_name=name,
                    password=password,
                    must_change_password=True,
                    actor=ACTOR,
                )
            except (AccountError, ScopeError) as exc:
                raise fail(str(exc)) from None
        where = f" at {user.unit}" if user.unit else ""
        console.print(f"added {user.login} ({user.role}{where})", highlight=False)
        if password is not None and given is None:
            console.print(f"initial password (shown once; to be changed at the first sign-in): {password}")
        elif password is None:
            console.print("no password: link a platform account (cxhub users link) to let them sign in")

    @users_app.command("list")
    def users_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """Every console user: role, unit, state, last sign-in, linked platforms (never a hash)."""
        from commands.display import Display
        from commands.display import table as display_table

        with runtime(config, features=()) as rt:
            accounts = accounts_of(rt)
            users = accounts.list_users()
            links = accounts.links_of(u.id for u in users)
            sessions = accounts.session_counts(u.id for u in users)
            show = Display(rt.config)
            if as_json:
                for u in users:
                    print(
                        dump_json(
                            {
                                "login": u.login,
                                "name": u.display_name,
                                "role": u.role,
                                "unit": u.unit,
                                "disabled": u.disabled,
                                "must_change_password": u.must_change_password,
                                "last_login_at": u.last_login_at,
                                "links": [f"{link.provider}:{link.subject}" for link in links.get(u.id, [])],
                                "sessions": sessions.get(u.id, 0),
                            }
                        )
                    )
                return
            from rich.markup import escape

            table = display_table(
                "login", "name", "role", "unit", "state", show.column("last sign-in"), "links", "sessions"
            )
            for u in users:
                state = "disabled" if u.disabled else ("must change password" if u.must_change_password else "active")
                table.add_row(
                    escape(u.login),
                    escape(u.display_name),
                    u.role,
                    escape(u.unit or ""),
                    state,
                    show.when(u.last_login_at),
                    escape(", ".join(f"{link.provider}:{link.subject}" for link in links.get(u.id, []))),
                    str(sessions.get(u.id, 0)),
                )
        console.print(table)
        console.print(f"{len(users)} user(s)", highlight=False)

    def set_disabled(login: str, disabled: bool, config) -> None:  # type: ignore[no-untyped-def]
        with the_user(config, login) as (_rt, accounts, user):
            accounts.set_disabled(user.id, disabled, actor=ACTOR)
        console.print(f"{login} {'disabled (sessions ended)' if disabled else 'enabled'}", highlight=False)

    @users_app.command("disable")
    def users_disable(login: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
        """Disable a user: their sessions end at once, their API tokens stop working."""
        set_disabled(login, True, config)

    @users_app.command("enable")
    def users_enable(login: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
        """Enable a disabled user again."""
        set_disabled(login, False, config)

    @users_app.command("passwd")
    def users_passwd(
        login: Annotated[str, typer.Argument()],
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the new initial password from stdin.")
        ] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Reset a password: a new initial password (printed once unless --password-stdin) that must
        be changed at the next sign-in; every session of the user ends."""
        from hub.console.accounts import AccountError

        given = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
        with the_user(config, login) as (_rt, accounts, user):
            try:
                new = accounts.reset_password(user.id, actor=ACTOR, password=given)
            except AccountError as exc:
                raise fail(str(exc)) from None
        console.print(f"{login}: password reset, sessions ended", highlight=False)
        if given is None:
            console.print(f"initial password (shown once; to be changed at the next sign-in): {new}")

    @users_app.command("link")
    def users_link(
        login: Annotated[str, typer.Argument()],
        provider: Annotated[str, typer.Option(help="dingtalk, feishu or wecom.")],
        subject: Annotated[
            str,
            typer.Option(
                help="Their id on the platform: DingTalk unionId (or openId), Feishu user_id (or open_id), "
                "WeCom userid."
            ),
        ],
        unlink: Annotated[bool, typer.Option("--unlink", help="Remove this link instead.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Let a platform account sign in as this user (or, with --unlink, no longer)."""
        from hub.console.accounts import AccountError

        with the_user(config, login) as (rt, accounts, user):
            try:
                if unlink:
                    if not accounts.unlink(user.id, provider, subject, actor=ACTOR):
                        raise fail(f"{login} has no {provider} link {subject!r}")
                else:
                    accounts.link(user.id, provider, subject, actor=ACTOR)
            except AccountError as exc:
                raise fail(str(exc)) from None
            enabled = provider in rt.config.raw.console.oauth
        console.print(f"{login} {'unlinked from' if unlink else 'linked to'} {provider}:{subject}", highlight=False)
        if not unlink and not enabled:
            err.print(f"note: console.oauth.{provider} is not configured, so this sign-in is not offered yet")

    @users_app.command("logout")
    def users_logout(login: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
        """End every session of a user (their browsers must sign in again)."""
        from hub.console.accounts import audit

        with the_user(config, login) as (rt, accounts, user):
            n = accounts.end_all_sessions(user.id)
            with rt.store.begin() as conn:
                audit(conn, rt.clock(), ACTOR, "user.logout_all", f"user:{login}", {"sessions": n})
        console.print(f"{login}: {n} session(s) ended", highlight=False)

    @token_app.command("create")
    def token_create(
        login: Annotated[str, typer.Argument()],
        name: Annotated[str, typer.Option(help="What the token is for (a script's name).")],
        days: Annotated[float, typer.Option(help="Days until it expires (0: never).")] = 90,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create an API token for LOGIN; the token is printed once (the store keeps only its hash)."""
        from hub.console.accounts import AccountError

        with the_user(config, login) as (_rt, accounts, user):
            try:
                tid, token = accounts.create_token(user.id, name, days or None, actor=ACTOR)
            except AccountError as exc:
                raise fail(str(exc)) from None
        if as_json:
            print(json.dumps({"id": tid, "login": login, "name": name, "token": token}))
            return
        console.print(f"token {tid} for {login} ({name}); shown once, store it now:", highlight=False)
        console.print(token, highlight=False, soft_wrap=True)

    @token_app.command("revoke")
    def token_revoke(
        token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id (cxhub users token list).")],
        config: ConfigOpt = None,
    ) -> None:
        """Revoke an API token at once."""
        with runtime(config, features=()) as rt:
            if not accounts_of(rt).revoke_token(token_id, actor=ACTOR):
                raise fail(f"no live API token with id {token_id}")
        console.print(f"token {token_id} revoked", highlight=False)

    @token_app.command("list")
    def token_list(
        login: Annotated[str | None, typer.Argument(help="Only this user's.")] = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """API tokens, newest first (never the tokens themselves)."""
        from commands.display import Display
        from commands.display import table as display_table

        with runtime(config, features=()) as rt, handled():
            accounts = accounts_of(rt)
            user_id = user_of(accounts, login).id if login else None
            tokens = accounts.list_tokens(user_id)
            now = rt.clock()
            show = Display(rt.config)
        if as_json:
            for tk in tokens:
                print(
                    dump_json(
                        {
                            "id": tk.id,
                            "login": tk.login,
                            "name": tk.name,
                            "state": tk.state(now),
                            "created_at": tk.created_at,
                            "expires_at": tk.expires_at,
                            "last_used_at": tk.last_used_at,
                        }
                    )
                )
            return
        table = display_table("id", "login", "name", "state", show.column("expires"), show.column("last used"))
        for tk in tokens:
            table.add_row(
                str(tk.id), tk.login, tk.name, tk.state(now), show.when(tk.expires_at), show.when(tk.last_used_at)
            )
        console.print(table)
